import subprocess
import sys
import time

import pytest

from data import jobs, versions
from data.store import open_db


def test_a_job_that_succeeds_is_done_with_its_result(db, db_path):
    job_id = jobs.create_job(db, "generate", {"k": 2})
    with jobs.running_job(db_path, job_id) as (job, result):
        assert job.args == {"k": 2}
        job.progress(1, 2, "half way")
        job.log("a line")
        job.metrics(0, {"loss": 1.5})
        result["items"] = 3
    done = jobs.get_job(db, job_id)
    assert done["status"] == "done" and done["progress"] == 1 and done["result"] == {"items": 3}
    assert "a line" in done["log"]
    assert jobs.job_metrics(db, job_id) == [{"step": 0, "loss": 1.5}]


def test_a_job_that_raises_is_failed_with_the_error(db, db_path):
    job_id = jobs.create_job(db, "generate", {})
    with pytest.raises(RuntimeError):
        with jobs.running_job(db_path, job_id):
            raise RuntimeError("out of prompts")
    failed = jobs.get_job(db, job_id)
    assert failed["status"] == "failed" and "RuntimeError: out of prompts" in failed["error"]


def test_cancelling_interrupts_a_running_job(db, db_path):
    job_id = jobs.create_job(db, "generate", {})
    started = time.time()
    with jobs.running_job(db_path, job_id):
        jobs.request_cancel(open_db(db_path), job_id)
        while time.time() - started < 15:  # work that never reports: the heartbeat interrupts it
            time.sleep(0.05)
    assert time.time() - started < 15
    assert jobs.get_job(db, job_id)["status"] == "cancelled"


def test_a_cancelled_job_stops_at_its_next_report(db, db_path):
    job_id = jobs.create_job(db, "generate", {})
    with jobs.running_job(db_path, job_id) as (job, _):
        job.cancelled.set()
        job.progress(1, 10)
        pytest.fail("progress() should have raised JobCancelled")
    assert jobs.get_job(db, job_id)["status"] == "cancelled"


def test_a_job_whose_process_died_is_marked_failed(db):
    job_id = jobs.create_job(db, "generate", {})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    db.execute("UPDATE jobs SET status = 'running', pid = ? WHERE id = ?", [dead.pid, job_id])
    db.conn.commit()
    lost = jobs.get_job(db, job_id)
    assert lost["status"] == "failed" and "ended without reporting" in lost["error"]


def test_unknown_job_kinds_are_refused(db):
    with pytest.raises(ValueError, match="unknown job kind"):
        jobs.create_job(db, "mine bitcoin", {})


def wait_for(db, job_id, statuses, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = jobs.get_job(db, job_id)
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")


def tiny_version(db, path) -> int:
    from data import items

    items.ensure_prompt_set(db, "s")
    for i in range(12):
        items.add_prompt(db, "s", f"Write a short poem number {i}.")
    db.conn.commit()
    return versions.register_version(db, "generator", "tiny", path, activate=True)


def test_generation_runs_as_a_background_process(db, db_path, tiny_generator):
    version = tiny_version(db, tiny_generator)
    job_id = jobs.start_job(db_path, "generate", {"prompt_set": "s", "k": 3, "max_new_tokens": 12,
                                                  "prompts_per_batch": 5, "generator_version": version})
    job = wait_for(db, job_id, {"done", "failed"})
    assert job["status"] == "done", job["error"]
    assert job["result"]["items"] == 12 and job["result"]["completions"] == 36
    rows = db.execute("SELECT n_tokens, finish_reason, generator_version_id FROM completions").fetchall()
    assert len(rows) == 36
    assert all(0 <= n <= 12 and reason in ("eos", "length") and v == version for n, reason, v in rows)
    assert jobs.job_log_path(db_path, job_id).exists()
    # A second run skips prompts this version already did.
    again = wait_for(db, jobs.start_job(db_path, "generate", {"prompt_set": "s", "generator_version": version}), {"done", "failed"})
    assert again["result"]["items"] == 0


def test_cancel_from_the_admin_stops_a_background_job(db, db_path, tiny_generator):
    version = tiny_version(db, tiny_generator)
    job_id = jobs.start_job(db_path, "generate", {"prompt_set": "s", "k": 9, "max_new_tokens": 400, "temperature": 2.0,
                                                  "prompts_per_batch": 1, "generator_version": version})
    wait_for(db, job_id, {"running"})
    jobs.request_cancel(db, job_id)
    job = wait_for(db, job_id, {"cancelled", "done", "failed"}, timeout=60)
    assert job["status"] == "cancelled"
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] < 12  # stopped early, what was done is kept
