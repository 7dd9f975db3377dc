"""Background jobs: long work (generation, training) runs in its own process.

The admin page starts a job with `start_job`, which spawns `python -m <module> --db ... --job N`.
The job process wraps its work in `running_job`, which records progress, a log tail,
metrics, the result or the error in the `jobs` table, and beats a heartbeat so that a
crashed or killed process is noticed. Cancelling sets a flag that the heartbeat thread
turns into a KeyboardInterrupt in the worker. The same modules run from the command line:
without `--job` they create their own job row and run in the foreground.
"""

import _thread
import argparse
import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import types
import typing
from datetime import datetime, timezone
from pathlib import Path

from sqlite_utils import Database

from data import versions
from data.items import BUILTIN_SET
from data.store import db_file, from_json, is_lock_error, now, open_db, resolve_db_path, to_json, write_transaction

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JOB_MODULES = {
    "generate": "policy.generate",
    "train_rm": "rm.train",
    "train_policy": "policy.train",
    "sft": "policy.sft",
    "dpo": "policy.dpo",
    "export": "data.export",
    "score_queue": "rm.uncertainty",
}
HEARTBEAT_S = 2.0
LOST_AFTER_S = 60.0
LOG_TAIL_CHARS = 8000
PRINT_EVERY_S = 10.0  # how often a training loop's progress is printed
LOCK_RETRY_S = 0.5  # pause between tries of a job's own write while another process holds the write lock


class JobCancelled(Exception):
    """Raised inside a job when an admin cancelled it."""


def create_job(db: Database, kind: str, args: dict) -> int:
    """Queue a job, refusing at once what would fail or clash later (a bad or taken version name, a second
    generation for the same prompts and generator). Checked and inserted in one transaction."""
    if kind not in JOB_MODULES:
        raise ValueError(f"unknown job kind {kind!r}: use one of {sorted(JOB_MODULES)}")
    mark_lost_jobs(db)  # a crashed job must not block new ones
    with write_transaction(db):
        if kind in versions.VERSION_KIND_OF_JOB:
            versions.check_version_name(db, versions.VERSION_KIND_OF_JOB[kind], args.get("name") or "")
        if kind == "generate":
            _refuse_second_generation(db, args)
        if kind == "score_queue":  # a newer scoring supersedes: one at a time, with the model active now
            for (other,) in db.execute("SELECT id FROM jobs WHERE kind = 'score_queue' AND status IN ('queued', 'running')").fetchall():
                request_cancel(db, other)
        return db.execute(
            "INSERT INTO jobs (kind, args, created_at) VALUES (?, ?, ?)", [kind, to_json(args), now()]
        ).lastrowid


def _refuse_second_generation(db: Database, args: dict) -> None:
    """Two generations for one prompt set and generator would both write items for the same prompts."""
    target = _generation_target(db, args)
    pending = db.execute("SELECT id, args FROM jobs WHERE kind = 'generate' AND status IN ('queued', 'running')")
    for job_id, other in pending.fetchall():
        if _generation_target(db, from_json(other, {})) == target:
            raise ValueError(f"job {job_id} is already generating for prompt set {target[0]!r} with generator "
                             f"version {target[1]}: wait for it to finish, or cancel it under Jobs")


def _generation_target(db: Database, args: dict) -> tuple[str, int | None]:
    """(prompt set, generator version id) of a generation job; no version named means the active one."""
    version = args.get("generator_version")
    if version is None:
        active = versions.active_version(db, "generator")
        version = None if active is None else active["id"]
    return args.get("prompt_set", BUILTIN_SET), version


def start_job(db_path: str | os.PathLike, kind: str, args: dict) -> int:
    """Create a job and run it in a new process. Returns at once with the job id."""
    db_path = resolve_db_path(db_path).resolve()
    db = open_db(db_path)
    job_id = create_job(db, kind, args)
    log_file = open(job_log_path(db_path, job_id), "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", JOB_MODULES[kind], "--db", str(db_path), "--job", str(job_id)],
        cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log_file.close()
    with db.atomic():
        db.execute("UPDATE jobs SET pid = ? WHERE id = ? AND pid IS NULL", [process.pid, job_id])
    return job_id


def job_log_path(db_path: str | os.PathLike, job_id: int) -> Path:
    """Everything a job process printed, next to the database."""
    folder = resolve_db_path(db_path).resolve().parent / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"job-{job_id}.log"


def request_cancel(db: Database, job_id: int) -> None:
    with db.atomic():
        db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", [job_id])
        db.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued' AND pid IS NULL",
            [now(), job_id],
        )


def get_job(db: Database, job_id: int) -> dict:
    mark_lost_jobs(db)
    row = next(iter(db.query("SELECT * FROM jobs WHERE id = ?", [job_id])), None)
    if row is None:
        raise LookupError(f"job {job_id} does not exist")
    return _decoded(row)


def list_jobs(db: Database, limit: int = 20, kind: str | None = None) -> list[dict]:
    mark_lost_jobs(db)
    where, params = ("WHERE kind = ?", [kind]) if kind else ("", [])
    return [_decoded(r) for r in db.query(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT {int(limit)}", params)]


def job_metrics(db: Database, job_id: int) -> list[dict]:
    """The metrics a job logged, one dict per step, with the step number under 'step'."""
    rows = db.execute("SELECT step, values_json FROM job_metrics WHERE job_id = ? ORDER BY step", [job_id])
    return [{"step": step, **from_json(values)} for step, values in rows]


def mark_lost_jobs(db: Database) -> None:
    """Mark as failed the unfinished jobs whose process is gone (ended, or its pid reused by another program),
    then sweep the model folders they left half-saved."""
    rows = db.execute(
        "SELECT id, kind, pid, heartbeat_at, created_at FROM jobs WHERE status IN ('queued', 'running') AND pid IS NOT NULL"
    ).fetchall()
    lost = [job_id for job_id, kind, pid, heartbeat_at, created_at in rows
            if _is_lost(job_id, kind, pid, heartbeat_at or created_at)]
    for job_id in lost:
        _mark_lost(db, job_id)
    if lost:
        versions.sweep_staging(db)


def _is_lost(job_id: int, kind: str, pid: int, last_beat: str) -> bool:
    if not versions.process_alive(pid):
        return True
    # A silent heartbeat alone is no proof: another process may hold the write lock past the busy timeout.
    # It is lost only when the live pid is no longer the job's (pids are reused).
    return _seconds_since(last_beat) > LOST_AFTER_S and not _runs_job(pid, job_id, kind)


def _runs_job(pid: int, job_id: int, kind: str) -> bool:
    """Whether the live process `pid` runs this job, judged by its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return True  # no /proc here: a live pid is all there is to go on
    if "--job" in argv:  # started from the admin page: `python -m MODULE --db ... --job N`
        flag = argv.index("--job")
        return argv[flag + 1:flag + 2] == [str(job_id)]
    return JOB_MODULES.get(kind) in argv  # started from the command line: `python -m MODULE [flags]`


def _mark_lost(db: Database, job_id: int) -> None:
    error = "the job's process ended without reporting (crashed or killed)"
    log_path = job_log_path(db_file(db), job_id)
    if log_path.exists():
        error += ". Last output:\n" + log_path.read_text(errors="replace")[-2000:]
    with write_transaction(db):
        db.execute(
            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ? AND status IN ('queued', 'running')",
            [error, now(), job_id],
        )


def _seconds_since(timestamp: str) -> float:
    return (datetime.now(timezone.utc) - datetime.fromisoformat(timestamp)).total_seconds()


def _decoded(row: dict) -> dict:
    return {**row, "args": from_json(row["args"], {}), "result": from_json(row["result"])}


class Job:
    """What a running job reports through. Every call also checks for cancellation."""

    writes = True  # the process that saves the result (one of several under `accelerate launch`: see HelperProcess)

    def __init__(self, db: Database, job_id: int):
        self.db = db
        self.id = job_id
        self.args = from_json(db.execute("SELECT args FROM jobs WHERE id = ?", [job_id]).fetchone()[0])
        self.cancelled = threading.Event()
        self.started = self.printed = time.perf_counter()

    def progress(self, done: float, total: float, message: str = "") -> None:
        self._raise_if_cancelled()
        _write(self.db, "UPDATE jobs SET progress = ?, message = ? WHERE id = ?",
               [min(1.0, done / total) if total else 0.0, message, self.id], between_tries=self._raise_if_cancelled)

    def step_progress(self, step: int, total: int, text: str) -> None:
        """Progress of a training loop, "step 3/40 · <text> · ETA 80 s" (the ETA from the job's start), on the job's
        card and, every PRINT_EVERY_S and at the last step, on the terminal (or the job's log file)."""
        now_ = time.perf_counter()
        message = f"step {step}/{total} · {text} · ETA {(now_ - self.started) / step * (total - step):.0f} s"
        self.progress(step, total, message)
        if step == total or now_ - self.printed >= PRINT_EVERY_S:
            self.printed = now_
            print(message, flush=True)

    def log(self, line: str) -> None:
        print(line, flush=True)
        _write(self.db, "UPDATE jobs SET log = substr(log || ? || char(10), -?) WHERE id = ?",
               [line, LOG_TAIL_CHARS, self.id])

    def metrics(self, step: int, values: dict) -> None:
        self._raise_if_cancelled()
        _write(self.db, "INSERT OR REPLACE INTO job_metrics (job_id, step, values_json) VALUES (?, ?, ?)",
               [self.id, step, to_json(values)], between_tries=self._raise_if_cancelled)

    def _raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.id} was cancelled")


class HelperProcess:
    """The job as seen by every process but the first under `accelerate launch`: it trains its share and
    reports nothing and saves nothing; the first process records the job, its progress and the result."""

    writes = False

    def __init__(self, db: Database):
        self.db, self.id, self.args = db, None, {}

    def progress(self, done: float, total: float, message: str = "") -> None:
        pass

    def step_progress(self, step: int, total: int, text: str) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    def metrics(self, step: int, values: dict) -> None:
        pass


def launched_processes() -> int:
    """How many processes `accelerate launch` (or torchrun) started for this run; 1 when run alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _write(db: Database, sql: str, params: list, between_tries=lambda: None) -> None:
    """One write of a job's own bookkeeping. It waits out a write lock held past the busy timeout
    (a long import, a backup) instead of failing the job."""
    while True:
        try:
            with db.atomic():
                db.execute(sql, params)
            return
        except sqlite3.OperationalError as error:
            if not is_lock_error(error) or db.conn.in_transaction:  # inside a caller's transaction: theirs to retry
                raise
        between_tries()
        time.sleep(LOCK_RETRY_S)


@contextlib.contextmanager
def running_job(db_path: str | os.PathLike, job_id: int):
    """Run the body as job `job_id`: status, heartbeat, cancellation, result or error."""
    db = open_db(db_path)
    _write(db, "UPDATE jobs SET status = 'running', pid = ?, started_at = ?, heartbeat_at = ? WHERE id = ?",
           [os.getpid(), now(), now(), job_id])
    job = Job(db, job_id)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(db_path, job, stop), daemon=True)
    beat.start()
    restore_sigterm = _sigterm_as_interrupt()
    try:
        result = {}
        yield job, result
    except (JobCancelled, KeyboardInterrupt):
        _finish(db, job_id, "cancelled", error="cancelled by an admin")
    except BaseException:
        _finish(db, job_id, "failed", error=traceback.format_exc())
        raise
    else:
        _finish(db, job_id, "done", result=result)
    finally:
        stop.set()
        restore_sigterm()


def _finish(db: Database, job_id: int, status: str, error: str | None = None, result: dict | None = None) -> None:
    """Record the outcome, unless the job was already ended (marked lost, say): that is not overwritten."""
    _write(db, """UPDATE jobs SET status = ?, error = ?, result = ?, finished_at = ?,
                      progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END
                  WHERE id = ? AND status IN ('queued', 'running')""",
           [status, error, None if result is None else to_json(result), now(), status, job_id])


def _heartbeat(db_path, job: Job, stop: threading.Event) -> None:
    db = None
    while not stop.wait(HEARTBEAT_S):
        try:
            if db is None:
                db = open_db(db_path)  # a connection of this thread's own
            _beat(db, job)
        except Exception as error:  # a lock held past the busy timeout, say: dying here would lose Cancel
            print(f"heartbeat of job {job.id} missed: {error}", file=sys.stderr, flush=True)
    if db is not None:
        db.close()


def _beat(db: Database, job: Job) -> None:
    """Check for a cancel first (a read, never blocked by a writer), then say the job is alive."""
    cancel = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job.id]).fetchone()[0]
    if cancel and not job.cancelled.is_set():
        job.cancelled.set()
        _thread.interrupt_main()  # also stops work that never calls back (model loading)
    with db.atomic():
        db.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", [now(), job.id])


def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, lambda *_: _thread.interrupt_main())
    return lambda: signal.signal(signal.SIGTERM, previous)


def job_main(kind: str, config_cls, run, argv: list[str] | None = None) -> int:
    """Command-line entry shared by every job module.

    `python -m MODULE --job N` runs an existing job (what the admin page starts);
    `python -m MODULE [--field value ...]` creates a job from the flags and runs it here.
    `run(db, config, job)` does the work and returns a result dict.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {JOB_MODULES[kind]}", description=config_cls.__doc__)
    parser.add_argument("--db", help="SQLite file (default: $RLHF_DB or data/app.db)")
    parser.add_argument("--job", type=int, help="run this existing job (as started from the admin page)")
    for f in dataclasses.fields(config_cls):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_arg_type(f),
                            default=None, help=f"{f.metadata.get('help', '')} (default: {_default(f)})")
    args = parser.parse_args(argv)
    db_path = resolve_db_path(args.db)
    db = open_db(db_path)
    if process_rank() > 0:  # `accelerate launch`: the first process records the job; this one trains its share
        fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if getattr(args, f.name) is not None}
        config = config_cls(**(from_json(db.execute("SELECT args FROM jobs WHERE id = ?", [args.job]).fetchone()[0])
                                if args.job else fields))
        run(db, config, HelperProcess(db))
        return 0
    if args.job is None:
        try:
            config = config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
                                   if getattr(args, f.name) is not None})
            job_id = create_job(db, kind, dataclasses.asdict(config))
        except ValueError as error:  # a bad flag or a refused job: say so before any work starts
            parser.error(str(error))
        print(f"job {job_id} ({kind}) started", flush=True)
    else:
        job_id = args.job
        config = config_cls(**from_json(db.execute("SELECT args FROM jobs WHERE id = ?", [job_id]).fetchone()[0]))
    started = time.time()
    with running_job(db_path, job_id) as (job, result):
        result.update(run(job.db, config, job) or {})
    status = get_job(db, job_id)["status"]
    print(f"job {job_id} {status} after {time.time() - started:.1f} s: {to_json(result)}", flush=True)
    return 0 if status == "done" else 1


def _arg_type(f: dataclasses.Field):
    kind = f.type
    if isinstance(kind, types.UnionType):  # `int | None` and the like
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    if not isinstance(kind, type):
        kind = type(_default(f))
    if kind is bool:
        return lambda text: text.lower() in ("1", "true", "yes", "on")
    if kind in (int, float, str):
        return kind
    return str


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None
