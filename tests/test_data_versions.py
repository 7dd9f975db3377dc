"""Version names, atomic saves of model folders, and the sweep of the staging folders that killed saves leave."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import versions

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAY_S = 24 * 3600


@pytest.mark.parametrize("name", ["rm-1", "A", "policy_v2.1", "x" * 64, "",  # and the default names, under ids without the time
                                  *(pytest.param(versions.default_version_name(kind), id=f"default-{kind}") for kind in ("rm", "policy"))])
def test_safe_free_version_names_pass(db, name):
    versions.check_version_name(db, "reward", name)


@pytest.mark.parametrize("name", [".", "..", ".rm", "-rm", "_rm", "../../escaped-rm", "/tmp/escaped-rm", "a/b", "a\\b",
                                  "a b", "x" * 65, "naïve", "rm\n", "rm\x00"])
def test_unsafe_version_names_are_refused_with_what_to_type(db, name):
    with pytest.raises(ValueError, match="is not allowed: type 1 to 64 letters, digits, '.', '_' or '-'"):
        versions.check_version_name(db, "reward", name)


def write_weights(folder: Path) -> None:
    (folder / "weights.bin").write_bytes(b"\0" * 16)


def test_save_atomically_writes_the_version_folder_and_leaves_no_staging(db):
    folder = versions.save_atomically(db, "reward", "rm-1", write_weights)
    assert folder == versions.models_dir(db) / "reward" / "rm-1" and (folder / "weights.bin").exists()
    assert [p.name for p in folder.parent.iterdir()] == ["rm-1"]
    with pytest.raises(FileExistsError, match="choose another version name"):
        versions.save_atomically(db, "reward", "rm-1", write_weights)


@pytest.mark.parametrize("name", ["../../escaped-rm", "/tmp/escaped-rm-test", "..", "."])
def test_save_atomically_refuses_a_folder_outside_models(db, db_path, name):
    with pytest.raises(ValueError, match="is not allowed"):
        versions.save_atomically(db, "reward", name, write_weights)
    assert not (db_path.parent / "escaped-rm").exists() and not Path("/tmp/escaped-rm-test").exists()


def test_save_atomically_refuses_a_registered_name(db):
    versions.register_version(db, "generator", "g", "/elsewhere/g")
    with pytest.raises(ValueError, match="'g' exists already"):
        versions.save_atomically(db, "generator", "g", write_weights)


KILLED_SAVE = """
import sys, time
from data import versions
from data.store import open_db

def write(folder):
    (folder / "half-written.bin").write_bytes(b"x")
    print("writing", flush=True)
    time.sleep(60)

versions.save_atomically(open_db(sys.argv[1]), "reward", "rm-killed", write)
"""


def test_a_save_killed_mid_way_leaves_a_staging_folder_that_the_sweep_removes(db, db_path):
    saver = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(db_path)], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert saver.stdout.readline() == "writing\n"
    saver.send_signal(signal.SIGKILL)
    saver.wait()
    saver.stdout.close()
    [staging] = (versions.models_dir(db) / "reward").iterdir()
    assert staging.name.startswith(f".rm-killed.staging-{saver.pid}-")
    assert versions.sweep_staging(db) == [staging]
    assert not staging.exists()
    versions.save_atomically(db, "reward", "rm-killed", write_weights)  # the name is free again


def test_the_sweep_keeps_live_saves_and_versions_and_removes_day_old_staging(db):
    reward = versions.models_dir(db) / "reward"
    live = reward / f".rm-a.staging-{os.getpid()}-abcd1234"
    day_old = reward / f".rm-b.staging-{os.getpid()}-efgh5678"  # a live pid, but reused: nothing saves for a day
    old_style = reward / ".rm-c-ijkl9012"  # how staging folders were named before they carried a pid
    recent_old_style = reward / ".rm-d-mnop3456"
    version = reward / "rm-e"
    for folder in (live, day_old, old_style, recent_old_style, version):
        folder.mkdir(parents=True)
    for folder in (day_old, old_style):
        os.utime(folder, (time.time() - 2 * DAY_S,) * 2)
    assert sorted(versions.sweep_staging(db)) == sorted([day_old, old_style])
    assert live.exists() and recent_old_style.exists() and version.exists()


def test_the_sweep_of_a_database_without_models_does_nothing(db):
    assert versions.sweep_staging(db) == []
