"""The job queue: one heavy job at a time on a CPU machine, one per GPU on a GPU machine, in line order (issue 21)."""

import json
import os
import subprocess
import sys
import time

import pytest

from data import items, jobs, scheduler, versions
from data.scheduler import Capacity, plan
from data.store import now

CPU_MACHINE = Capacity(num_cpus=2, num_gpus=0, memory=24_000)


def job(id, kind="train_rm", cpus=2, gpus=0, memory=1500, given=()):
    return dict(id=id, kind=kind, num_cpus=cpus, num_gpus=gpus, memory=memory, gpus=given)


def test_on_a_cpu_machine_one_heavy_job_runs_and_light_ones_run_beside_it():
    decisions = plan(CPU_MACHINE, [], [job(1), job(2, "generate"), job(3, "export", cpus=0, memory=500), job(4, "dpo")])
    assert [(d.job_id, d.start) for d in decisions] == [(1, True), (2, False), (3, True), (4, False)]
    assert decisions[1].waits_for == "job 1 (reward-model training)"
    assert decisions[3].waits_for == "job 1 (reward-model training)"


def test_on_a_gpu_machine_each_training_gets_a_free_gpu_of_its_own():
    machine = Capacity(num_cpus=16, num_gpus=2, memory=128_000)
    running = [job(1, cpus=8, gpus=1, given=(1,))]
    decisions = plan(machine, running, [job(2, cpus=8, gpus=1), job(3, cpus=8, gpus=1)])
    assert (decisions[0].start, decisions[0].gpus) == (True, (0,))
    assert decisions[1].start is False


def test_a_job_waiting_for_two_gpus_is_not_overtaken_by_a_one_gpu_job_behind_it():
    machine = Capacity(num_cpus=16, num_gpus=2, memory=128_000)
    decisions = plan(machine, [job(1, cpus=4, gpus=1, given=(0,))], [job(2, cpus=8, gpus=2), job(3, cpus=4, gpus=1)])
    assert [d.start for d in decisions] == [False, False]


def test_a_job_too_big_for_the_memory_runs_alone_rather_than_never():
    assert plan(CPU_MACHINE, [], [job(1, memory=99_000)])[0].start
    assert not plan(CPU_MACHINE, [job(1, kind="export", cpus=0, memory=500)], [job(2, memory=99_000)])[0].start


def test_needs_follow_the_machine(monkeypatch):
    monkeypatch.setenv(scheduler.GPU_ENV_VAR, "0")
    cpu = scheduler.needs("sft", {}, scheduler.machine_capacity(), 540)
    assert cpu.num_cpus == os.cpu_count() and cpu.num_gpus == 0 and cpu.memory > 2000
    assert scheduler.needs("generate", {"k": 2, "remote": "llama=2"}, CPU_MACHINE, 540).num_cpus == 0  # all remote: light
    assert scheduler.needs("generate", {"k": 4, "remote": "llama=2"}, CPU_MACHINE, 540).num_cpus == 2


def hold_the_machine(db, kind="train_rm") -> int:
    """A job that runs (in this test's process) and holds every core."""
    job_id = jobs.create_job(db, kind, {})
    db.execute("UPDATE jobs SET status = 'running', pid = ?, claimed_at = ?, heartbeat_at = ? WHERE id = ?",
               [os.getpid(), now(), now(), job_id])
    db.conn.commit()
    return job_id


@pytest.fixture
def cpu_machine(monkeypatch):
    monkeypatch.setenv(scheduler.GPU_ENV_VAR, "0")


@pytest.fixture
def spawned(monkeypatch):
    """Record the jobs dispatch would start instead of starting their processes."""
    started = []
    monkeypatch.setattr(jobs, "_spawn", lambda db, path, job_id, gpus: started.append(job_id))
    return started


def test_a_queued_job_says_its_place_and_what_it_waits_for(db, db_path, cpu_machine, spawned):
    holder = hold_the_machine(db)
    first = jobs.start_job(db_path, "generate", {"prompt_set": "a"})
    second = jobs.start_job(db_path, "dpo", {})
    assert spawned == []
    places = jobs.queue_places(db)
    assert places[first] == {"place": 1, "waits_for": f"job {holder} (reward-model training)", "starting": False}
    assert places[second]["place"] == 2
    assert jobs.get_job(db, second)["phase"] == "waiting in line"


def test_a_job_moved_up_goes_first(db, db_path, cpu_machine, spawned):
    hold_the_machine(db)
    first, second, third = (jobs.start_job(db_path, "generate", {"prompt_set": s}) for s in "abc")
    jobs.move_up(db, third)
    assert [j for j, _ in sorted(jobs.queue_places(db).items(), key=lambda kv: kv[1]["place"])] == [first, third, second]
    jobs.move_up(db, third)
    assert min(jobs.queue_places(db).items(), key=lambda kv: kv[1]["place"])[0] == third
    with pytest.raises(ValueError, match="not waiting in line"):
        jobs.move_up(db, 999)


def test_a_queued_job_cancelled_never_starts(db, db_path, cpu_machine, spawned):
    holder = hold_the_machine(db)
    waiting = jobs.start_job(db_path, "generate", {})
    jobs.request_cancel(db, waiting)
    assert jobs.get_job(db, waiting)["status"] == "cancelled"
    db.execute("UPDATE jobs SET status = 'done' WHERE id = ?", [holder])
    db.conn.commit()
    jobs.dispatch(db_path)
    assert spawned == [] and jobs.get_job(db, waiting)["status"] == "cancelled"


def test_a_killed_job_frees_its_slot(db, db_path, cpu_machine, spawned):
    holder = hold_the_machine(db)
    waiting = jobs.start_job(db_path, "generate", {})
    assert spawned == []
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    db.execute("UPDATE jobs SET pid = ? WHERE id = ?", [dead.pid, holder])
    db.conn.commit()
    jobs.list_jobs(db)  # any look at the jobs notices the lost one, and starts what waited
    assert jobs.get_job(db, holder)["status"] == "failed"
    assert spawned == [waiting]


def test_a_scheduler_that_died_between_claim_and_start_frees_the_slot(db, db_path, cpu_machine, spawned):
    claimed = jobs.create_job(db, "generate", {})
    db.execute("UPDATE jobs SET claimed_at = '2000-01-01T00:00:00+00:00' WHERE id = ?", [claimed])
    db.conn.commit()
    waiting = jobs.start_job(db_path, "sft", {})  # queueing a job first notices lost ones
    assert jobs.get_job(db, claimed)["status"] == "failed" and spawned == [waiting]


TWO_SCHEDULERS = """
import sys
from data import jobs
started = []
jobs._spawn = lambda db, path, job_id, gpus: started.append(job_id)
for _ in range(40):
    jobs.dispatch(sys.argv[1])
print(started)
"""


@pytest.mark.slow
def test_two_schedulers_on_one_store_start_each_job_once(db, db_path, cpu_machine):
    ids = [jobs.create_job(db, "export", {"n": n}) for n in range(12)]  # light: all fit at once
    env = {**os.environ, scheduler.GPU_ENV_VAR: "0"}
    runs = [subprocess.Popen([sys.executable, "-c", TWO_SCHEDULERS, str(db_path)], stdout=subprocess.PIPE, text=True,
                             env=env, cwd=jobs.PROJECT_ROOT) for _ in range(2)]
    started = [json.loads(run.communicate(timeout=120)[0].strip().splitlines()[-1]) for run in runs]
    assert sorted(started[0] + started[1]) == ids


@pytest.mark.slow
def test_three_heavy_jobs_queued_at_once_run_one_at_a_time_and_all_finish(db, db_path, cpu_machine, tiny_generator):
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    for name in "abc":
        items.ensure_prompt_set(db, name)
        items.add_prompt(db, name, f"Say {name}.")
    db.conn.commit()
    args = dict(k=2, max_new_tokens=3, bf16="false")
    ids = [jobs.start_job(db_path, "generate", {**args, "prompt_set": name}) for name in "abc"]
    deadline = time.time() + 240
    while time.time() < deadline and any(jobs.get_job(db, i)["status"] in jobs.UNFINISHED for i in ids):
        running = [i for i in ids if jobs.get_job(db, i)["status"] == "running"]
        assert len(running) <= 1
        time.sleep(0.2)
    finished = [jobs.get_job(db, i) for i in ids]
    assert [j["status"] for j in finished] == ["done"] * 3, [j["error"] for j in finished]
    spans = sorted((j["started_at"], j["finished_at"]) for j in finished)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))  # never two at a time
    assert all(j["num_cpus"] == os.cpu_count() for j in finished)


def test_a_command_line_job_waits_its_turn_and_says_for_what(db, db_path, cpu_machine):
    holder = hold_the_machine(db)
    mine = jobs.create_job(db, "sft", {}, launcher="cli")
    said = []

    def release_later(line):
        said.append(line)
        db.execute("UPDATE jobs SET status = 'done' WHERE id = ?", [holder])
        db.conn.commit()

    assert jobs.wait_for_turn(db_path, mine, say=release_later)
    assert said == [f"job {mine} waits in line (1st), for job {holder} (reward-model training)"]
    assert jobs.get_job(db, mine)["claimed_at"] is not None


def test_an_app_scheduler_never_starts_a_command_line_job(db, db_path, cpu_machine, spawned):
    jobs.create_job(db, "sft", {}, launcher="cli")
    jobs.dispatch(db_path)
    assert spawned == []


def test_a_phase_shows_on_the_card_and_restarts_the_eta(db, db_path, capsys):
    job_id = jobs.create_job(db, "train_rm", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        job.phase("loading the model")
        card = jobs.get_job(db, job_id)
        assert card["phase"] == "loading the model" and card["phase_started_at"] and card["reported_at"]
        job.fact("precision", "fp32 (no native bf16)")
        job.phase("training")
        job.step_progress(1, 2, "loss 0.7")
    card = jobs.get_job(db, job_id)
    assert card["phase"] == "done" and json.loads(card["facts"]) == {"precision": "fp32 (no native bf16)"}
    assert "loading the model" in capsys.readouterr().out
