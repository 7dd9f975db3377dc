"""Background jobs: long work (generation, training) runs in its own process, one heavy job at a time.

The admin page queues a job with `start_job`; `dispatch` starts the queued jobs that fit in what the running ones
leave free (the rule is `data.scheduler.plan`), each as `python -m <module> --db ... --job N` with its share of
the threads and GPUs. A job that ends (or is found lost) dispatches the next, so the store is the queue and it
survives restarts. The job process wraps its work in `running_job`, which records its phase, progress, a log tail,
metrics, the result or the error in the `jobs` table, and beats a heartbeat so that a crashed or killed process is
noticed. Cancelling sets a flag that the heartbeat thread turns into a KeyboardInterrupt in the worker. The same
modules run from the command line: without `--job` they create their own job row, wait their turn in the same
queue, and run in the foreground.
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

from data import audit, scheduler, versions
from data.accounts import require_admin
from data.names import name_list
from data.prompt_sets import BUILTIN_SET
from data.secrets import scrub_secrets
from data.store import db_file, from_json, is_lock_error, now, open_db, resolve_db_path, to_json, write_transaction

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIG = PROJECT_ROOT / "training" / "accelerate" / "data_parallel.yaml"
JOB_MODULES = {
    "generate": "policy.generate",
    "train_rm": "rm.train",
    "train_policy": "policy.train",
    "sft": "policy.sft",
    "dpo": "policy.dpo",
    "export": "data.export",
    "score_queue": "rm.uncertainty",
    "judge": "policy.judge",
}
HEARTBEAT_S = 2.0
LOST_AFTER_S = 60.0
LOG_TAIL_CHARS = 8000
PRINT_EVERY_S = 10.0  # how often a training loop's progress is printed
LOCK_RETRY_S = 0.5  # pause between tries of a job's own write while another process holds the write lock
WAIT_POLL_S = 1.0  # how often a command-line job waiting in line asks for its turn
SILENT_AFTER_S = 30.0  # a running job that has not reported for this long is shown as silent, with its last phase
UNFINISHED = ('queued', 'running')


class JobCancelled(Exception):
    """Raised inside a job when an admin cancelled it."""


def create_job(db: Database, kind: str, args: dict, launcher: str = "app", actor=None) -> int:
    """Queue a job, refusing at once what would fail or clash later (a bad or taken version name, a second
    generation for the same prompts and generator). Checked and inserted in one transaction, with what it needs
    (threads, GPUs, memory: data.scheduler.needs). `launcher` 'cli': the calling process runs it when its turn comes.
    `actor`: the admin who asked, for the audit log (None: the command line or the app itself)."""
    if kind not in JOB_MODULES:
        raise ValueError(f"unknown job kind {kind!r}: use one of {sorted(JOB_MODULES)}")
    mark_lost_jobs(db)  # a crashed job must not block new ones
    with write_transaction(db):
        if actor is not None:  # the admin asking, re-checked with the job's own insert
            require_admin(db, actor)
        if kind in versions.VERSION_KIND_OF_JOB:
            versions.check_version_name(db, versions.VERSION_KIND_OF_JOB[kind], args.get("name") or "")
        if kind == "generate":
            _refuse_second_generation(db, args)
        if kind == "score_queue":  # a newer scoring supersedes: one at a time, with the model active now
            for (other,) in db.execute("SELECT id FROM jobs WHERE kind = 'score_queue' AND status IN ('queued', 'running')").fetchall():
                request_cancel(db, other)
        need = scheduler.needs(kind, args, scheduler.machine_capacity(), scheduler.weights_mb(_model_path(db, kind, args)))
        job_id = db.execute(
            """INSERT INTO jobs (kind, args, created_at, num_cpus, num_gpus, memory, launcher, pid, phase)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'waiting in line')""",
            [kind, to_json(args), now(), need.num_cpus, need.num_gpus, need.memory, launcher,
             os.getpid() if launcher == "cli" else None]).lastrowid
        db.execute("UPDATE jobs SET position = id WHERE id = ?", [job_id])
        audit.record(db, actor, f"start {kind}", f"job {job_id}", args)
        return job_id


def _model_path(db: Database, kind: str, args: dict) -> str | None:
    """The main model a job loads, for its memory estimate."""
    if kind in ("generate", "train_policy", "sft", "dpo", "judge"):
        if kind == "judge" and args.get("remote"):
            return None
        version = args.get("generator_version")
        try:
            row = versions.get_version(db, version) if version is not None else versions.active_version(db, "generator")
        except LookupError:  # the job itself says so if it needs the model; a remote-only mix never loads it
            return None
        return row and row["path"]
    if kind == "train_rm":
        return args.get("backbone") or "embedded:all-MiniLM-L6-v2"
    if kind == "score_queue":
        row = versions.active_version(db, "reward")
        return row and row["path"]
    return None


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


def start_job(db_path: str | os.PathLike, kind: str, args: dict, actor=None) -> int:
    """Queue a job and start it in a process of its own as soon as what it needs is free. Returns at once with its id.
    `actor`: the admin who asked (None: the command line or the app itself), for the audit log."""
    db_path = resolve_db_path(db_path).resolve()
    db = open_db(db_path)
    job_id = create_job(db, kind, args, actor=actor)
    dispatch(db_path)
    return job_id


def dispatch(db_path: str | os.PathLike, own: int | None = None) -> bool:
    """Start every queued job that fits now (`data.scheduler.plan`), each in a new process. Claimed inside one write
    transaction, so two app processes never start a job twice. `own`: a command-line job waiting in this process;
    returns whether it may run now (command-line jobs are only ever started by their own process)."""
    db_path = resolve_db_path(db_path).resolve()
    db = open_db(db_path)
    try:
        if own is None and db.execute("SELECT 1 FROM jobs WHERE status = 'queued' AND claimed_at IS NULL LIMIT 1").fetchone() is None:
            return False
        with write_transaction(db):
            holding, queued = _queue_rows(db)
            decisions = scheduler.plan(scheduler.machine_capacity(), holding, queued)
            launcher = {job["id"]: job["launcher"] for job in queued}
            claimed = [d for d in decisions if d.start and (launcher[d.job_id] == "app" or d.job_id == own)]
            for d in claimed:
                db.execute("""UPDATE jobs SET claimed_at = ?, gpus = ?, phase = 'starting its process', phase_started_at = ?,
                              reported_at = ? WHERE id = ? AND claimed_at IS NULL""",
                           [now(), ",".join(map(str, d.gpus)), now(), now(), d.job_id])
        for d in claimed:
            if d.job_id != own:
                _spawn(db, db_path, d.job_id, d.gpus)
        return any(d.job_id == own for d in claimed)
    finally:
        db.close()


def _queue_rows(db: Database) -> tuple[list[dict], list[dict]]:
    """(holding, queued): the running and starting jobs with what they hold, the waiting ones in line order."""
    columns = "id, kind, num_cpus, num_gpus, memory, gpus, launcher"
    holding = [{**row, "gpus": tuple(int(g) for g in row["gpus"].split(",") if g)} for row in db.query(
        f"SELECT {columns} FROM jobs WHERE status = 'running' OR (status = 'queued' AND claimed_at IS NOT NULL)")]
    queued = list(db.query(f"SELECT {columns} FROM jobs WHERE status = 'queued' AND claimed_at IS NULL ORDER BY position, id"))
    return holding, queued


def job_command(kind: str, processes: int) -> list[str]:
    """How a job's process starts: `python -m MODULE`, or `accelerate launch` of N processes of it (data parallel,
    one per GPU; gloo between CPU processes where there is no GPU).

    >>> job_command("sft", 1)[1:]
    ['-m', 'policy.sft']
    >>> job_command("sft", 2)[1:4], job_command("sft", 2)[-2:]
    (['-m', 'accelerate.commands.launch', '--config_file'], ['-m', 'policy.sft'])
    """
    if processes <= 1:
        return [sys.executable, "-m", JOB_MODULES[kind]]
    return [*accelerate_launch(processes), "-m", JOB_MODULES[kind]]


def accelerate_launch(processes: int) -> list[str]:
    """`accelerate launch` of `processes` processes on this machine with the shipped config
    (training/accelerate/data_parallel.yaml), never a user's default config, on a free port. Its log folder is
    os.devnull: torch's launcher otherwise leaves an empty /tmp/torchelastic_* tree behind at every launch, and a
    job's processes write to the job's log already (a failure is reported there and by its exit status)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIG),
            "--num_processes", str(processes), "--main_process_port", "0", "--log_dir", os.devnull]


def _spawn(db: Database, db_path: Path, job_id: int, gpus: tuple[int, ...]) -> None:
    """`python -m MODULE --db ... --job N` (under `accelerate launch` for a job of several processes) with the job's
    share of threads, split among its processes, and only its GPUs visible."""
    kind, num_cpus, args = db.execute("SELECT kind, num_cpus, args FROM jobs WHERE id = ?", [job_id]).fetchone()
    processes = max(1, int(from_json(args, {}).get("processes") or 1))
    threads = str(max(1, num_cpus // processes))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if scheduler.gpu_count():
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))  # none given: none visible
    try:
        with open(job_log_path(db_path, job_id), "ab") as log_file:
            process = subprocess.Popen(
                [*job_command(kind, processes), "--db", str(db_path), "--job", str(job_id)],
                cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env)
    except OSError as error:
        _finish(db, job_id, "failed", error=f"could not start the job's process: {error}")
        return
    _write(db, "UPDATE jobs SET pid = ? WHERE id = ? AND pid IS NULL", [process.pid, job_id])


def queue_places(db: Database) -> dict[int, dict]:
    """For each job waiting in line: its place (1 = next) and what it waits for, as its card and the CLI say it."""
    holding, queued = _queue_rows(db)
    decisions = scheduler.plan(scheduler.machine_capacity(), holding, queued)
    return {d.job_id: {"place": place, "waits_for": d.waits_for or "nothing (starting)", "starting": d.start}
            for place, d in enumerate(decisions, 1)}


def wait_for_turn(db_path: str | os.PathLike, job_id: int, say=print) -> bool:
    """A command-line job waits in line like any other. True when it may run; False when it was cancelled meanwhile."""
    db, said = open_db(db_path), 0.0
    try:
        while not dispatch(db_path, own=job_id):
            if db.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()[0] != "queued":
                return False
            if time.monotonic() - said >= PRINT_EVERY_S:
                said, place = time.monotonic(), queue_places(db).get(job_id, {})
                say(f"job {job_id} waits in line ({ordinal(place.get('place', 1))}), for {place.get('waits_for', 'free resources')}")
            time.sleep(WAIT_POLL_S)
        return True
    finally:
        db.close()


def ordinal(n: int) -> str:
    """
    >>> [ordinal(n) for n in (1, 2, 3, 4, 11, 22)]
    ['1st', '2nd', '3rd', '4th', '11th', '22nd']
    """
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def move_up(db: Database, job_id: int) -> None:
    """Swap a waiting job with the one just ahead of it in line."""
    with write_transaction(db):
        line = [row[0] for row in db.execute(
            "SELECT id FROM jobs WHERE status = 'queued' AND claimed_at IS NULL ORDER BY position, id")]
        if job_id not in line:
            raise ValueError(f"job {job_id} is not waiting in line: only a queued job can be moved up")
        at = line.index(job_id)
        if at == 0:
            return
        ahead = line[at - 1]
        (mine,), (theirs,) = (db.execute("SELECT position FROM jobs WHERE id = ?", [i]).fetchone() for i in (job_id, ahead))
        db.execute("UPDATE jobs SET position = ? WHERE id = ?", [theirs, job_id])
        db.execute("UPDATE jobs SET position = ? WHERE id = ?", [mine if mine != theirs else theirs + 0.5, ahead])


def job_log_path(db_path: str | os.PathLike, job_id: int) -> Path:
    """Everything a job process printed, next to the database."""
    folder = resolve_db_path(db_path).resolve().parent / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"job-{job_id}.log"


def request_cancel(db: Database, job_id: int, actor=None) -> None:
    with db.atomic():
        if actor is not None:  # an admin's Cancel (a superseded scoring job is cancelled by the app itself)
            audit.record(db, actor, "cancel job", f"job {job_id}")
        db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", [job_id])
        db.execute(  # not started yet: cancelled at once (a command-line job waiting in line sees it and stops)
            "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued' AND claimed_at IS NULL",
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


def latest_done(db: Database, kind: str, prompt_set: str) -> dict | None:
    """The newest finished job of this kind for this prompt set (None: there is none), its arguments and result
    decoded: how its last round was run and what it made, for the next round to run the same way."""
    rows = db.query("""SELECT * FROM jobs WHERE kind = ? AND status = 'done' AND json_valid(args)
                       AND json_extract(args, '$.prompt_set') = ? ORDER BY id DESC LIMIT 1""", [kind, prompt_set])
    return next((_decoded(row) for row in rows), None)


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
    # claimed by a scheduler that died before its process started
    lost += [job_id for job_id, claimed_at in db.execute(
        "SELECT id, claimed_at FROM jobs WHERE status = 'queued' AND claimed_at IS NOT NULL AND pid IS NULL").fetchall()
        if _seconds_since(claimed_at) > LOST_AFTER_S]
    for job_id in lost:
        _mark_lost(db, job_id)
    if lost:
        versions.sweep_staging(db)
        if not db.conn.in_transaction:
            dispatch(db_file(db))  # what the lost jobs held is free again


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
        error += ". Last output:\n" + scrub_secrets(log_path.read_text(errors="replace")[-2000:])
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
        self.started = self.printed = self.phase_started = time.perf_counter()

    def phase(self, name: str) -> None:
        """What the job does from now on ("loading the model", "training", "evaluating", "saving"): on its card with
        the time spent in it, and on the terminal. Progress and the ETA of `step_progress` count from here."""
        self._raise_if_cancelled()
        self.phase_started = time.perf_counter()
        print(f"job {self.id}: {name}", flush=True)
        _write(self.db, "UPDATE jobs SET phase = ?, phase_started_at = ?, reported_at = ?, progress = 0, message = '' WHERE id = ?",
               [name, now(), now(), self.id], between_tries=self._raise_if_cancelled)

    def fact(self, name: str, value: str) -> None:
        """Something the job chose on the way that its card shows (`precision: fp32 (...)`), also in its log."""
        self.log(f"{name}: {value}")
        _write(self.db, "UPDATE jobs SET facts = json_set(facts, '$.' || ?, ?) WHERE id = ?", [name, value, self.id])

    def progress(self, done: float, total: float, message: str = "") -> None:
        self._raise_if_cancelled()
        _write(self.db, "UPDATE jobs SET progress = ?, message = ?, reported_at = ? WHERE id = ?",
               [min(1.0, done / total) if total else 0.0, message, now(), self.id], between_tries=self._raise_if_cancelled)

    def step_progress(self, step: int, total: int, text: str) -> None:
        """Progress of a loop, "step 3/40 · <text> · ETA 80 s" (the ETA of the current phase, from its start), on the
        job's card and, every PRINT_EVERY_S and at the last step, on the terminal (or the job's log file)."""
        now_ = time.perf_counter()
        message = f"step {step}/{total} · {text} · {self.eta(step, total)}"
        self.progress(step, total, message)
        if step == total or now_ - self.printed >= PRINT_EVERY_S:
            self.printed = now_
            print(message, flush=True)

    def eta(self, done: float, total: float) -> str:
        """"ETA 80 s": the current phase's time so far, scaled to what is left of it (from its start, as if even)."""
        elapsed = time.perf_counter() - self.phase_started
        return f"ETA {elapsed / done * (total - done):.0f} s" if done > 0 else "ETA after the first step"

    def log(self, line: str) -> None:
        print(line, flush=True)
        _write(self.db, "UPDATE jobs SET log = substr(log || ? || char(10), -?) WHERE id = ?",
               [line, LOG_TAIL_CHARS, self.id])

    def metrics(self, step: int, values: dict) -> None:
        """Record figures at a step; figures logged at the same step before (the training loss, then a check of the
        KL or an epoch's evaluation) are kept beside them, not replaced."""
        self._raise_if_cancelled()
        _write(self.db, """INSERT INTO job_metrics (job_id, step, values_json) VALUES (?, ?, ?)
                           ON CONFLICT (job_id, step) DO UPDATE SET values_json = json_patch(values_json, excluded.values_json)""",
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

    def phase(self, name: str) -> None:
        pass

    def fact(self, name: str, value: str) -> None:
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
    _write(db, """UPDATE jobs SET status = 'running', pid = ?, started_at = ?, heartbeat_at = ?, claimed_at = COALESCE(claimed_at, ?),
                  phase = 'starting', phase_started_at = ?, reported_at = ? WHERE id = ?""",
           [os.getpid(), now(), now(), now(), now(), now(), job_id])
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
        _dispatch_next(db_path)


def _dispatch_next(db_path) -> None:
    """What this job held is free: start whatever waits. A failure here must not change how the job ended."""
    try:
        dispatch(db_path)
    except Exception as error:  # the next page load or job end dispatches again
        print(f"could not start the next queued job: {error}", file=sys.stderr, flush=True)


def _finish(db: Database, job_id: int, status: str, error: str | None = None, result: dict | None = None) -> None:
    error = None if error is None else scrub_secrets(error)  # a remote server's error may echo its key
    """Record the outcome, unless the job was already ended (marked lost, say): that is not overwritten."""
    _write(db, """UPDATE jobs SET status = ?, error = ?, result = ?, finished_at = ?, phase = ?,
                      progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END
                  WHERE id = ? AND status IN ('queued', 'running')""",
           [status, error, None if result is None else to_json(result), now(), status, status, job_id])


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
        # A real SIGINT to the main thread: it also stops work that never calls back (model loading) and wakes a
        # blocking wait (asyncio's select, where remote requests are in flight), which interrupt_main would not.
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    with db.atomic():
        db.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", [now(), job.id])


def _sigterm_as_interrupt():
    """SIGTERM (the admin's Cancel when the job is killed) and SIGINT (the heartbeat's) both raise KeyboardInterrupt
    in the main thread, even where the job's process was started with SIGINT ignored (a shell's background job)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, lambda *_: _thread.interrupt_main()), signal.signal(signal.SIGINT, signal.default_int_handler)
    return lambda: (signal.signal(signal.SIGTERM, previous[0]), signal.signal(signal.SIGINT, previous[1]))


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
                            default=None, help=f"{f.metadata.get('help', '')} (default: {_default(f)})".replace("%", "%%"))
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
            job_id = create_job(db, kind, dataclasses.asdict(config), launcher="cli")
        except ValueError as error:  # a bad flag or a refused job: say so before any work starts
            parser.error(str(error))
        print(f"job {job_id} ({kind}) queued", flush=True)
        if not wait_for_turn(db_path, job_id):
            print(f"job {job_id} was cancelled while it waited", flush=True)
            return 1
        print(f"job {job_id} ({kind}) started", flush=True)
        if getattr(config, "processes", 1) > 1 and launched_processes() == 1:  # its processes, under accelerate launch
            done = subprocess.run([*job_command(kind, config.processes), "--db", str(db_path), "--job", str(job_id)],
                                  cwd=PROJECT_ROOT)
            return done.returncode
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
    if typing.get_origin(kind) is list:  # list[str]: "a,b", or '["a, b", "c"]' for names holding commas
        return name_list
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
