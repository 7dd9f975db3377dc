"""Model versions: generators (the policy) and reward models, one active of each kind."""

import os
import shutil
import tempfile
from pathlib import Path

from sqlite_utils import Database

from data.store import db_file, from_json, now, to_json, write_transaction

EMBEDDED_GENERATOR_NAME = "SmolLM2-135M-Instruct (embedded)"
# Stored as the version's path; policy.models turns it into the cached plain copy of the GGUF.
EMBEDDED_GENERATOR_PATH = "embedded:SmolLM2-135M-Instruct"


def register_version(
    db: Database, kind: str, name: str, path: str, parent_id: int | None = None,
    config: dict | None = None, metrics: dict | None = None, activate: bool = False,
) -> int:
    """Register a finished model folder (or a Hugging Face id) as a new version."""
    with write_transaction(db):
        if db.execute("SELECT 1 FROM model_versions WHERE kind = ? AND name = ?", [kind, name]).fetchone():
            raise ValueError(f"a {kind} version named {name!r} exists already: pick another name")
        version_id = db.execute(
            """INSERT INTO model_versions (kind, name, path, parent_id, config, metrics, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            [kind, name, str(path), parent_id, to_json(config or {}), to_json(metrics or {}), now()],
        ).lastrowid
        if activate:
            set_active(db, version_id)
    return version_id


def set_active(db: Database, version_id: int) -> None:
    with write_transaction(db):
        kind = get_version(db, version_id)["kind"]
        db.execute("UPDATE model_versions SET is_active = (id = ?) WHERE kind = ?", [version_id, kind])


def get_version(db: Database, version_id: int) -> dict:
    row = next(iter(db.query("SELECT * FROM model_versions WHERE id = ?", [version_id])), None)
    if row is None:
        raise LookupError(f"model version {version_id} does not exist: see the Models list on the admin page")
    return _decoded(row)


def active_version(db: Database, kind: str) -> dict | None:
    row = next(iter(db.query("SELECT * FROM model_versions WHERE kind = ? AND is_active = 1", [kind])), None)
    return None if row is None else _decoded(row)


def version_or_active(db: Database, kind: str, version_id: int | None) -> dict:
    """The named version, or the active one of its kind when none is named."""
    if version_id is not None:
        return get_version(db, version_id)
    version = active_version(db, kind)
    if version is None:
        hint = "run `python -m data init`" if kind == "generator" else "train one on the admin page (Reward model tab)"
        raise LookupError(f"no active {kind}: {hint}, or pick a version")
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


def save_atomically(folder: Path, write) -> Path:
    """Call write(staging_folder), then rename it to `folder`: a half-written folder is never seen."""
    if folder.exists():
        raise FileExistsError(f"{folder} exists already: choose another version name")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write(staging)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
