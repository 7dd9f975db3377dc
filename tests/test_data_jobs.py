import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_cancel_from_the_admin_stops_a_background_job(db, db_path, tiny_generator):
    version = tiny_version(db, tiny_generator)
    job_id = jobs.start_job(db_path, "generate", {"prompt_set": "s", "k": 9, "max_new_tokens": 400, "temperature": 2.0,
                                                  "prompts_per_batch": 1, "generator_version": version})
    wait_for(db, job_id, {"running"})
    jobs.request_cancel(db, job_id)
    job = wait_for(db, job_id, {"cancelled", "done", "failed"}, timeout=60)
    assert job["status"] == "cancelled"
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] < 12  # stopped early, what was done is kept


# Finding 1: version names are checked when the job is created, before any training.

@pytest.mark.parametrize("name", ["../../escaped-rm", "/tmp/escaped-rm", ".", "..", ".hidden", "a/b", "x" * 65, "name\n"])
def test_an_unsafe_version_name_is_refused_when_the_job_is_created(db, name):
    with pytest.raises(ValueError, match="is not allowed: type 1 to 64 letters"):
        jobs.create_job(db, "train_rm", {"name": name})
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_a_version_name_taken_by_a_version_or_a_queued_job_is_refused(db):
    versions.register_version(db, "reward", "rm-a", "/models/rm-a")
    with pytest.raises(ValueError, match="'rm-a' exists already: type another name"):
        jobs.create_job(db, "train_rm", {"name": "rm-a"})
    queued = jobs.create_job(db, "sft", {"name": "gen-b"})
    with pytest.raises(ValueError, match=f"job {queued} will already make a generator version named 'gen-b'"):
        jobs.create_job(db, "train_policy", {"name": "gen-b"})
    jobs.create_job(db, "train_rm", {"name": "gen-b"})  # another kind of version may share the name
    jobs.create_job(db, "sft", {"name": ""})  # empty: the trainer picks a dated name
    jobs.create_job(db, "sft", {"name": ""})


def test_the_command_line_refuses_an_escaping_name_before_training(db_path, capsys):
    from rm.config import RewardConfig

    trained = []
    with pytest.raises(SystemExit) as exit_:
        jobs.job_main("train_rm", RewardConfig, lambda db, config, job: trained.append(config),
                      ["--db", str(db_path), "--name", "../../escaped-rm"])
    assert exit_.value.code == 2 and trained == []
    assert "'../../escaped-rm' is not allowed: type 1 to 64 letters" in capsys.readouterr().err
    assert open_db(db_path).execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


# Finding 2: a job marked lost sweeps the staging folders its killed save left.

def test_marking_a_job_lost_removes_the_staging_folder_of_its_killed_save(db):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    staging = versions.models_dir(db) / "reward" / f".rm-x.staging-{dead.pid}-abcd1234"
    (staging / "weights").mkdir(parents=True)
    job_id = jobs.create_job(db, "train_rm", {})
    db.execute("UPDATE jobs SET status = 'running', pid = ? WHERE id = ?", [dead.pid, job_id])
    db.conn.commit()
    assert jobs.get_job(db, job_id)["status"] == "failed"
    assert not staging.exists()


# Finding 3: a write lock held past the busy timeout does not break job tracking.

@pytest.fixture
def short_timeouts(monkeypatch):
    from data import store

    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(jobs, "LOCK_RETRY_S", 0.05)


def hold_write_lock(db_path, seconds: float) -> threading.Timer:
    """Another connection takes the write lock now and releases it after `seconds`."""
    other = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, lambda: (other.rollback(), other.close()))
    release.start()
    return release


def test_a_lock_longer_than_the_busy_timeout_neither_kills_the_heartbeat_nor_the_job(db, db_path, short_timeouts):
    job_id = jobs.create_job(db, "generate", {})
    started = time.time()
    with jobs.running_job(db_path, job_id) as (job, _):
        release = hold_write_lock(db_path, 1.0)  # 5 busy timeouts, 20 heartbeats
        job.progress(1, 2, "written once the lock is gone")
        job.log("so is this")
        job.metrics(1, {"loss": 0.5})
        release.join()
        jobs.request_cancel(open_db(db_path), job_id)
        while time.time() - started < 15:  # only a living heartbeat can interrupt this
            time.sleep(0.05)
    assert time.time() - started < 15
    cancelled = jobs.get_job(db, job_id)
    assert cancelled["status"] == "cancelled" and cancelled["message"] == "written once the lock is gone"
    assert "so is this" in cancelled["log"] and jobs.job_metrics(db, job_id) == [{"step": 1, "loss": 0.5}]


def test_a_job_that_was_marked_failed_is_not_flipped_to_done(db, db_path):
    job_id = jobs.create_job(db, "generate", {})
    with jobs.running_job(db_path, job_id) as (_, result):
        db.execute("UPDATE jobs SET status = 'failed', error = 'lost' WHERE id = ?", [job_id])
        db.conn.commit()
        result["items"] = 1
    job = jobs.get_job(db, job_id)
    assert job["status"] == "failed" and job["error"] == "lost" and job["result"] is None


def silent_job(db, argv_tail: list[str]) -> tuple[int, subprocess.Popen]:
    """A running job whose live process has not beaten for 10 minutes."""
    job_id = jobs.create_job(db, "generate", {})
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv_tail])
    db.execute("UPDATE jobs SET status = 'running', pid = ?, heartbeat_at = ? WHERE id = ?",
               [process.pid, (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat(), job_id])
    db.conn.commit()
    return job_id, process


@pytest.mark.parametrize("argv_tail, status", [
    (["--job", "{job_id}"], "running"),  # started from the admin page
    (["-m", "policy.generate"], "running"),  # started from the command line
    ([], "failed"),  # the pid now belongs to another program
])
def test_a_silent_job_is_lost_only_when_its_pid_is_no_longer_its_process(db, argv_tail, status):
    next_id = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM jobs").fetchone()[0]
    job_id, process = silent_job(db, [a.format(job_id=next_id) for a in argv_tail])
    try:
        assert job_id == next_id
        time.sleep(0.3)  # let the interpreter start: its command line is what is checked
        assert jobs.get_job(db, job_id)["status"] == status
    finally:
        process.kill()
        process.wait()


# Finding 4: one generation at a time per prompt set and generator.

def test_a_second_generation_for_the_same_prompts_and_generator_is_refused(db):
    generator = versions.register_version(db, "generator", "g", "/models/g", activate=True)
    first = jobs.create_job(db, "generate", {"prompt_set": "s", "generator_version": generator})
    with pytest.raises(ValueError, match=f"job {first} is already generating for prompt set 's'"):
        jobs.create_job(db, "generate", {"prompt_set": "s", "generator_version": generator})
    with pytest.raises(ValueError, match=f"job {first} is already generating"):
        jobs.create_job(db, "generate", {"prompt_set": "s", "generator_version": None})  # the active one is the same
    other_set = jobs.create_job(db, "generate", {"prompt_set": "t", "generator_version": generator})
    jobs.request_cancel(db, first)
    assert jobs.create_job(db, "generate", {"prompt_set": "s", "generator_version": generator}) > other_set


def test_a_training_loop_reports_steps_with_an_eta_on_the_card_and_the_terminal(db, db_path, capsys, monkeypatch):
    monkeypatch.setattr(jobs, "PRINT_EVERY_S", 3600.0)  # only the last step is printed
    job_id = jobs.create_job(db, "train_rm", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        job.phase_started -= 10  # ten seconds into the phase
        job.step_progress(1, 4, "loss 0.700")
        card = jobs.get_job(db, job_id)
        assert card["progress"] == 0.25 and card["message"].startswith("step 1/4 · loss 0.700 · ETA 3")  # 30 s left
        job.step_progress(4, 4, "loss 0.100")
    assert capsys.readouterr().out.splitlines() == ["step 4/4 · loss 0.100 · ETA 0 s"]


def test_figures_logged_at_the_same_step_are_kept_together(db, db_path):
    """A DPO step logs its training loss, then a KL check at the same step: the check must not erase the loss."""
    job_id = jobs.create_job(db, "dpo", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        job.metrics(1, {"train/loss": 0.69, "train/accuracy": 0.5})
        job.metrics(1, {"val/kl": 0.2})
        job.metrics(1, {"train/accuracy": 0.75})
        job.metrics(2, {"train/loss": 0.6})
    assert jobs.job_metrics(db, job_id) == [{"step": 1, "train/loss": 0.69, "train/accuracy": 0.75, "val/kl": 0.2},
                                            {"step": 2, "train/loss": 0.6}]


def test_jobs_of_several_processes_launch_with_the_shipped_accelerate_config():
    from accelerate.commands.config.config_args import load_config_from_file

    command = jobs.job_command("train_rm", 2)
    assert command[command.index("--config_file") + 1] == str(jobs.ACCELERATE_CONFIG)
    assert command[command.index("--num_processes") + 1] == "2" and command[-2:] == ["-m", "rm.train"]
    config = load_config_from_file(str(jobs.ACCELERATE_CONFIG))  # what accelerate launch reads from it
    assert config.distributed_type == "MULTI_GPU" and config.mixed_precision == "no" and config.num_machines == 1
    assert not config.fsdp_config and not config.deepspeed_config  # the split is the trainers' --strategy
