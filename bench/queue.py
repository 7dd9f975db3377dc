"""The job queue against starting every job at once: a generation, a reward-model training, a policy update and a DPO
run started together, as an admin clicking through the Train screens does (issue 21).

    python -m bench.queue [--out queue]

One seeded store (the built-in prompts, 24 of them ranked by a scripted annotator who prefers shorter answers).
Three runs of the same four jobs, each job its own process as the app starts it:
- alone: each job by itself, one after another (its time alone);
- queued: all four queued at once through `data.jobs.start_job` (the scheduler runs one heavy job at a time, each with
  every core);
- all at once: all four started at once in processes of their own, each with every core (what the app did before).
Reported per job: seconds from queueing to done, and for the queue, that time against its time alone plus its wait.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import save
from data import annotation, builtin, jobs
from data.rankings import ranks_to_groups
from data.store import now, open_db

JOBS = {  # small settings: a few minutes for all three runs on 2 cores
    "generate": {"prompt_set": "builtin", "k": 4, "max_new_tokens": 48, "limit": 8, "skip_done": False},
    "train_rm": {"epochs": 1},
    "train_policy": {"steps": 2, "prompts_per_step": 2, "k": 4, "max_new_tokens": 32, "eval_prompts": 0},
    "dpo": {"epochs": 1, "eval_samples": 0, "rankings_per_step": 4},
}


def seeded_store(folder: Path) -> Path:
    path = folder / "bench.db"
    db = open_db(path)
    builtin.init_db(db)
    me = annotation.annotator_id(db, "scripted")
    for item_id in [row[0] for row in db.execute("SELECT id FROM items ORDER BY id LIMIT 24")]:
        texts = annotation.completions_of(db, item_id)
        lengths = sorted({len(c.text) for c in texts})
        groups = ranks_to_groups({c.position: lengths.index(len(c.text)) for c in texts})
        annotation.submit_ranking(db, item_id, me, groups, list(range(len(texts))))
    db.close()
    return path


def wait_all(db, ids: list[int], limit_s: float = 3600) -> dict[int, dict]:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        listed = {i: jobs.get_job(db, i) for i in ids}
        if all(j["status"] not in jobs.UNFINISHED for j in listed.values()):
            return listed
        time.sleep(1)
    raise TimeoutError(f"jobs {ids} still running after {limit_s} s")


def seconds(job: dict, since: str | None = None) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(since or job["created_at"])).total_seconds()


def all_at_once(db, path: Path, args: dict[str, dict]) -> list[int]:
    """Every job claimed and started at once, each with every core: the app before the queue."""
    ids = [jobs.create_job(db, kind, a) for kind, a in args.items()]
    with db.atomic():
        db.execute(f"UPDATE jobs SET claimed_at = ? WHERE id IN ({', '.join('?' * len(ids))})", [now(), *ids])
    for job_id in ids:
        jobs._spawn(db, path, job_id, ())
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="queue")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    try:
        path = seeded_store(folder)
        db = open_db(path)
        settings = {kind: dict(a) for kind, a in JOBS.items()}
        alone = {}
        for kind in settings:  # train_rm first among the trainers: the policy update needs its reward model
            [job_id] = [jobs.start_job(path, kind, settings[kind])]
            job = wait_all(db, [job_id])[job_id]
            assert job["status"] == "done", job["error"]
            alone[kind] = seconds(job, job["started_at"])
            print(f"alone: {kind} {alone[kind]:.1f} s", flush=True)
            if kind == "train_rm":
                settings["train_policy"]["reward_version"] = job["result"]["version"]
        runs = {}
        for run, start in (("queued", lambda: [jobs.start_job(path, k, a) for k, a in settings.items()]),
                           ("all_at_once", lambda: all_at_once(db, path, settings))):
            started = time.time()
            ids = start()
            finished = wait_all(db, ids)
            assert all(j["status"] == "done" for j in finished.values()), [j["error"] for j in finished.values()]
            runs[run] = {"makespan_s": round(time.time() - started, 1), "jobs": {
                j["kind"]: {"queued_to_done_s": round(seconds(j), 1), "waited_s": round(seconds(j) - seconds(j, j["started_at"]), 1),
                            "ran_s": round(seconds(j, j["started_at"]), 1)} for j in finished.values()}}
            print(f"{run}: {runs[run]}", flush=True)
        for kind, figures in runs["queued"]["jobs"].items():
            figures["ran_over_alone"] = round(figures["ran_s"] / alone[kind], 2)
        for kind, figures in runs["all_at_once"]["jobs"].items():
            figures["ran_over_alone"] = round(figures["ran_s"] / alone[kind], 2)
        save(args.out, {"jobs": JOBS, "alone_s": {k: round(v, 1) for k, v in alone.items()}, **runs,
                        "queued_makespan_over_all_at_once": round(runs["queued"]["makespan_s"] / runs["all_at_once"]["makespan_s"], 2)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
