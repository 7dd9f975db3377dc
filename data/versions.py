"""Model versions: generators (the policy) and reward models, one active of each kind.

Training registers a version; it becomes active only when the admin asked for it and its evaluation passed the gate
(training.gate). An admin activates, rolls back to or deletes any version here (the Models screen, `python -m data
versions`); each change is recorded with who made it and when.
"""

import os
import re
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sqlite_utils import Database

from data.accounts import User, require_admin
from data.store import db_file, from_json, now, to_json, write_transaction

EMBEDDED_GENERATOR_NAME = "SmolLM2-135M-Instruct (embedded)"
# Stored as the version's path; policy.models turns it into the cached plain copy of the GGUF.
EMBEDDED_GENERATOR_PATH = "embedded:SmolLM2-135M-Instruct"
# A version name is also its folder's name: no separators, no '.' or '..', nothing hidden.
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The jobs that register a version when they finish, and the kind of version each one makes.
VERSION_KIND_OF_JOB = {"train_rm": "reward", "sft": "generator", "train_policy": "generator", "dpo": "generator"}
# A save in progress writes into models/<kind>/.<name>.staging-<pid>-<random>, renamed into place at the end.
OLD_STAGING = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9._-]*-[a-z0-9_]{8}")
STAGING_OWNER = re.compile(r"\.staging-(\d+)-\w+\Z")
STAGING_MAX_AGE_S = 24 * 3600


def register_version(
    db: Database, kind: str, name: str, path: str, parent_id: int | None = None,
    config: dict | None = None, metrics: dict | None = None, activate: bool = False, by: str = "its training job (asked, gate passed)",
) -> int:
    """Register a finished model folder (or a Hugging Face id) as a new version; `by`: who activates it, if it is."""
    with write_transaction(db):
        _check_not_registered(db, kind, name)
        version_id = db.execute(
            """INSERT INTO model_versions (kind, name, path, parent_id, config, metrics, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            [kind, name, str(path), parent_id, to_json(config or {}), to_json(metrics or {}), now()],
        ).lastrowid
        if activate:
            set_active(db, version_id, by=by)
    return version_id


def set_active(db: Database, version_id: int, actor: User | None = None, by: str = "", override: str = "") -> None:
    """Make a version the active one of its kind (activate, or roll back to an earlier one), recording who did it.
    `actor`: the admin asking on a screen, re-checked inside the transaction; `by`: a name for other callers;
    `override`: why its evaluation gate did not pass, when an admin makes it active anyway (kept in the history)."""
    with write_transaction(db):
        require_admin(db, actor)
        version = get_version(db, version_id)
        db.execute("UPDATE model_versions SET is_active = (id = ?) WHERE kind = ?", [version_id, version["kind"]])
        note = f"below its gate: {override}" if override else ""
        _record(db, version, "activated", actor.name if actor else by or "training job", note)


def _record(db: Database, version: dict, action: str, by: str, note: str = "") -> None:
    db.execute("INSERT INTO model_version_events (version_id, kind, name, action, by, at, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
               [version["id"], version["kind"], version["name"], action, by, now(), note])


def version_events(db: Database, limit: int = 50) -> list[dict]:
    """The newest activations and deletions first."""
    return list(db.query("SELECT * FROM model_version_events ORDER BY id DESC LIMIT ?", [limit]))


def uses_of(db: Database, version_id: int) -> list[str]:
    """What keeps a version from being deleted: being active, another version trained from it, completions it wrote
    (they are data), a queued or running job that will load it."""
    version = get_version(db, version_id)
    uses = ["it is the active one"] if version["is_active"] else []
    uses += [f"version {name!r} was trained from it" for (name,) in db.execute(
        "SELECT name FROM model_versions WHERE parent_id = ?", [version_id])]
    (written,) = db.execute("SELECT count(*) FROM completions WHERE generator_version_id = ?", [version_id]).fetchone()
    if written:
        uses.append(f"{written:,} completion{'s were' if written != 1 else ' was'} written by it")
    if version["kind"] == "reward":
        uses += [f"generator {name!r} was trained against it" for (name,) in db.execute(
            "SELECT name FROM model_versions WHERE kind = 'generator' AND json_extract(config, '$.reward_version') = ?",
            [version_id])]
    key = "generator_version" if version["kind"] == "generator" else "reward_version"
    uses += [f"job {job_id} ({status}) will use it" for job_id, status in db.execute(
        f"SELECT id, status FROM jobs WHERE status IN ('queued', 'running') AND json_extract(args, '$.{key}') = ?",
        [version_id])]
    return uses


def delete_version(db: Database, version_id: int, actor: User | None = None, by: str = "") -> None:
    """Delete a version nothing uses, and its folder when it lies under models/ (a local path or Hugging Face id
    registered from elsewhere is never touched)."""
    with write_transaction(db):
        require_admin(db, actor)
        version = get_version(db, version_id)
        uses = uses_of(db, version_id)
        if uses:
            raise ValueError(f"version {version['name']!r} is in use and was not deleted: {'; '.join(uses)}")
        db.execute("DELETE FROM model_versions WHERE id = ?", [version_id])
        _record(db, version, "deleted", actor.name if actor else by or "command line")
    folder = Path(version["path"])
    if folder.is_dir() and models_dir(db).resolve() in folder.resolve().parents:
        shutil.rmtree(folder, ignore_errors=True)


def lineage(db: Database, version: dict) -> dict:
    """Where a version came from: its parent, the job that made it, what that job trained on."""
    parent = get_version(db, version["parent_id"])["name"] if version["parent_id"] else None
    reward_id = version["config"].get("reward_version")
    reward = next((r[0] for r in db.execute("SELECT name FROM model_versions WHERE id = ?", [reward_id])), None) if reward_id else None
    job = db.execute(
        """SELECT id, kind FROM jobs WHERE status = 'done' AND json_extract(result, '$.version') = ?
           AND kind IN ('train_rm', 'sft', 'train_policy', 'dpo') ORDER BY id LIMIT 1""", [version["id"]]).fetchone()
    config, metrics = version["config"], version["metrics"]
    sets = config.get("prompt_sets") or config.get("prompt_set") or ("all prompt sets" if job else "")
    data = ", ".join(sets) if isinstance(sets, list) else sets  # one text for every version (a table's column)
    seen = next((f"{metrics[key]:,} {what}" + (f" ({metrics[held]:,} more held out to test it)" if metrics.get(held) else "")
                 for key, held, what in (("train/rankings", "val/rankings", "rankings"),
                                         ("train/demonstrations", "val/demonstrations", "demonstrations"))
                 if metrics.get(key)), "")
    return {"parent": parent, "reward_model": reward, "job": job[0] if job else None, "data": data, "examples": seen}


def get_version(db: Database, version_id: int) -> dict:
    row = next(iter(db.query("SELECT * FROM model_versions WHERE id = ?", [version_id])), None)
    if row is None:
        raise LookupError(f"model version {version_id} does not exist: see the Train → Models screen or `python -m data versions`")
    return _decoded(row)


KIND_NAMES = {"generator": "generator", "reward": "reward model"}


def brief(db: Database, version_ids: list[int]) -> dict[int, dict]:
    """id -> {name, kind, is_active} of these versions, in one query (a job card names the versions it used or made)."""
    ids = sorted({int(i) for i in version_ids if i is not None})
    if not ids:
        return {}
    rows = db.query(f"SELECT id, name, kind, is_active FROM model_versions WHERE id IN ({', '.join('?' * len(ids))})", ids)
    return {r["id"]: r for r in rows}


def active_version(db: Database, kind: str) -> dict | None:
    row = next(iter(db.query("SELECT * FROM model_versions WHERE kind = ? AND is_active = 1", [kind])), None)
    return None if row is None else _decoded(row)


def version_or_active(db: Database, kind: str, version_id: int | None) -> dict:
    """The named version, or the active one of its kind when none is named."""
    if version_id is not None:
        return get_version(db, version_id)
    version = active_version(db, kind)
    if version is None:
        hint = "run `python -m data init`" if kind == "generator" else "train one on the Train → Reward model screen"
        raise LookupError(f"no active {KIND_NAMES.get(kind, kind)}: {hint}, or make one active under Train → Models, or pick a version")
    return version


def list_versions(db: Database, kind: str) -> list[dict]:
    return [_decoded(row) for row in db.query("SELECT * FROM model_versions WHERE kind = ? ORDER BY id", [kind])]


def version_named(db: Database, kind: str, name: str) -> dict | None:
    row = next(iter(db.query("SELECT * FROM model_versions WHERE kind = ? AND name = ?", [kind, name])), None)
    return None if row is None else _decoded(row)


def _decoded(row: dict) -> dict:
    return {**row, "config": from_json(row["config"], {}), "metrics": from_json(row["metrics"], {}),
            "is_active": bool(row["is_active"])}


def models_dir(db: Database) -> Path:
    """Trained model folders live next to the database: <db folder>/models/<kind>/<name>."""
    return db_file(db).parent / "models"


def check_version_name(db: Database, kind: str, name: str) -> None:
    """Refuse, before any training starts, a name that is unsafe as a folder or already taken.

    Taken means registered, or promised by a queued or running job. An empty name is fine:
    the trainer then picks a dated one (`default_version_name`).
    """
    if not name:
        return
    _check_name_format(name)
    _check_not_registered(db, kind, name)
    job_id = _job_making(db, kind, name)
    if job_id is not None:
        raise ValueError(f"job {job_id} will already make a {kind} version named {name!r}: "
                         "type another name, or leave it empty for a dated one")


def default_version_name(prefix: str) -> str:
    """`<prefix>-<date>-<time>`, the name of a version trained without one."""
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _check_name_format(name: str) -> None:
    if not VERSION_NAME.fullmatch(name):
        raise ValueError(f"version name {name!r} is not allowed: type 1 to 64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit (for example short-answers-2), or leave it empty for a dated one")


def _check_not_registered(db: Database, kind: str, name: str) -> None:
    if version_named(db, kind, name) is not None:
        raise ValueError(f"a {kind} version named {name!r} exists already: type another name, "
                         "or leave it empty for a dated one")
    if kind == "generator" and db.execute("SELECT 1 FROM remote_generators WHERE name = ?", [name]).fetchone():
        raise ValueError(f"a remote generator is named {name!r}: a generator version needs a name of its own (completions "
                         "carry their source's name), type another one")


def _job_making(db: Database, kind: str, name: str) -> int | None:
    """The queued or running job that will register a `kind` version called `name`, if any."""
    job_kinds = [job for job, made in VERSION_KIND_OF_JOB.items() if made == kind]
    row = db.execute(
        f"""SELECT id FROM jobs WHERE status IN ('queued', 'running') AND kind IN ({', '.join('?' * len(job_kinds))})
              AND json_extract(args, '$.name') = ?""",
        [*job_kinds, name],
    ).fetchone()
    return None if row is None else row[0]


def save_atomically(db: Database, kind: str, name: str, write) -> Path:
    """Call write(staging_folder), then rename it to models/<kind>/<name>: a half-written folder is never seen.

    The staging folder carries this process's id, so `sweep_staging` can remove it if the save is killed.
    """
    folder = _version_folder(db, kind, name)
    if folder.exists():
        raise FileExistsError(f"{folder} exists already: choose another version name")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-{os.getpid()}-", dir=folder.parent))
    try:
        write(staging)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _version_folder(db: Database, kind: str, name: str) -> Path:
    """models/<kind>/<name>, after a last check that the name cannot lead out of models/."""
    assert kind in ("generator", "reward"), f"unknown version kind {kind!r}"
    _check_name_format(name)
    _check_not_registered(db, kind, name)
    return models_dir(db) / kind / name


def sweep_staging(db: Database) -> list[Path]:
    """Remove the staging folders of killed saves: their process is gone, or they are over a day old."""
    removed = []
    for staging in models_dir(db).glob("*/.*"):
        if staging.is_dir() and _abandoned(staging):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def _abandoned(staging: Path) -> bool:
    """A staging folder (today's `.NAME.staging-PID-…`, or an older version's `.NAME-xxxxxxxx`) of a dead or day-old save."""
    owner = STAGING_OWNER.search(staging.name)
    if not owner and not OLD_STAGING.fullmatch(staging.name):
        return False  # some other hidden folder: not ours to remove
    if owner and not process_alive(int(owner[1])):
        return True
    try:
        return time.time() - staging.stat().st_mtime > STAGING_MAX_AGE_S
    except FileNotFoundError:  # its save just renamed it into place
        return False


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a zombie has exited but is not reaped yet
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    return True
