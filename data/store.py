"""Open the SQLite store: one file, WAL, foreign keys, a busy timeout, migrations at start-up."""

import contextlib
import datetime
import json
import os
import sqlite3
import threading
from pathlib import Path

from sqlite_utils import Database

from data.migrations import migrations

DEFAULT_DB_PATH = Path(__file__).resolve().parent / "app.db"
DB_ENV_VAR = "RLHF_DB"
BUSY_TIMEOUT_S = 30


# Writers of this process queue here, each woken the moment the one before commits. Left to SQLite's busy
# handler alone, 64 annotators' sessions retried the file lock with sleeps of up to 100 ms, and the unlucky
# ones waited seconds (bench/annotate_load.py). Other processes (jobs, the CLI) still meet the busy timeout.
_WRITERS = threading.Lock()


class StoreBusy(RuntimeError):
    """Another process held the write lock for longer than the busy timeout; nothing was written."""


def resolve_db_path(path: str | os.PathLike | None = None) -> Path:
    """The database file: an explicit path, else $RLHF_DB, else data/app.db."""
    return Path(path or os.environ.get(DB_ENV_VAR) or DEFAULT_DB_PATH)


def open_db(path: str | os.PathLike | None = None) -> Database:
    """Open (creating if needed) the store and bring its schema up to date."""
    path = resolve_db_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    db = Database(conn)
    with db.ensure_autocommit_on():
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    db.execute("PRAGMA synchronous=NORMAL")
    if migrations.pending(db):  # a read: opening an up-to-date store never waits for the write lock
        with write_transaction(db):
            migrations.apply(db)  # re-checks what is pending under the lock: two openers apply each migration once
    return db


def db_file(db: Database) -> Path:
    """The file behind an open database."""
    return Path(db.conn.execute("PRAGMA database_list").fetchone()[2])


@contextlib.contextmanager
def write_transaction(db: Database):
    """One user action, one transaction.

    `BEGIN IMMEDIATE` takes the write lock up front, so concurrent writers wait on the
    busy timeout instead of failing with "database is locked" when a read turns into a
    write. Nested calls (and `db.atomic()` inside) become savepoints.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    busy = StoreBusy(f"The store is busy: another process held it for over {BUSY_TIMEOUT_S} s. Try again in a moment.")
    if not _WRITERS.acquire(timeout=BUSY_TIMEOUT_S):
        raise busy
    try:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if not is_lock_error(error):
                raise
            raise busy from None
        try:
            yield db
        except BaseException:
            db.rollback()
            raise
        db.execute("COMMIT")
    finally:
        _WRITERS.release()


def is_lock_error(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock (past the busy timeout)."""
    return "locked" in str(error) or "busy" in str(error)


def now() -> str:
    """UTC timestamp as stored in every `created_at` column (sortable ISO 8601)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def to_the_minute(stamp: str) -> str:
    """A stored timestamp as the tables show it.

    >>> to_the_minute("2026-12-07T01:06:30.912+00:00")
    '2026-12-07 01:06'
    """
    return stamp[:16].replace("T", " ")


def to_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def from_json(text: str | None, default=None):
    return default if text is None else json.loads(text)


def backup(db: Database, out: str | os.PathLike) -> dict:
    """A consistent copy of the live database (SQLite's online backup), written beside `out` then renamed."""
    out = Path(out)
    if out.resolve() == db_file(db).resolve():
        raise ValueError("back up to another file than the database itself")
    partial = out.with_name(out.name + ".partial")
    target = sqlite3.connect(partial)
    try:
        db.conn.backup(target)
    finally:
        target.close()
    os.replace(partial, out)
    return {"backup": str(out), "bytes": out.stat().st_size}
