import os
import shutil

import pytest

collect_ignore = ["pages"]  # Streamlit scripts the browser tests serve: not modules to import for doctests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from data import items  # noqa: E402
from data.store import open_db  # noqa: E402
from tests.tiny import save_tiny_generator  # noqa: E402


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "test.db"


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory):
    """An empty store with every migration applied, made once: `db` and `app_db` start from a copy of it (migrating
    a new file costs ~50 ms, a copy ~1 ms, and most tests open one). Tests of the migrations open `db_path` themselves."""
    path = tmp_path_factory.mktemp("migrated") / "store.db"
    open_db(path).close()  # closing the last connection folds the WAL into the file
    assert not path.with_name("store.db-wal").exists()
    return path


@pytest.fixture
def db(db_path, migrated_store):
    shutil.copyfile(migrated_store, db_path)
    database = open_db(db_path)
    yield database
    database.close()


@pytest.fixture
def app_db(db_path, migrated_store, monkeypatch):
    """A seeded database that the app under AppTest opens (through $RLHF_DB)."""
    from data import builtin

    from data import accounts

    monkeypatch.setenv("RLHF_DB", str(db_path))
    shutil.copyfile(migrated_store, db_path)
    database = open_db(db_path)
    builtin.init_db(database)
    accounts.create_user(database, "admin", "admin-password", role="admin")
    return database


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory) -> str:
    return str(save_tiny_generator(tmp_path_factory.mktemp("tiny-generator")))


def add_items(db, n_items: int, k: int = 4, prompt_set: str = "test") -> list[int]:
    """n prompts with k completions each, as items to rank."""
    from data.items import NewCompletion

    items.ensure_prompt_set(db, prompt_set)
    item_ids = []
    for i in range(n_items):
        prompt_id, _ = items.add_prompt(db, prompt_set, f"prompt {i}")
        item_ids.append(items.add_item(db, prompt_id, [NewCompletion(f"completion {i}.{j}" + " word" * j) for j in range(k)]))
    db.conn.commit()
    return item_ids


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    from tests.tiny import save_tiny_encoder

    return str(save_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder")))


def write_demonstrations(db, n: int, prompt_set: str = "demos") -> None:
    """n prompts, a demonstration of each (what an SFT run needs to start)."""
    from data import annotation, demonstrations

    items.ensure_prompt_set(db, prompt_set)
    writer = annotation.annotator_id(db, "writer")
    for i in range(n):
        demonstrations.save_demonstration(db, items.add_prompt(db, prompt_set, f"task {i}")[0], writer, f"answer {i}")
    db.conn.commit()


def rank_by(db, item_ids: list[int], better, annotator: str = "scripted") -> None:
    """A scripted annotator: ranks each item's completions by better(text) (higher is better, equal ties)."""
    from data import annotation
    from data.rankings import ranks_to_groups

    me = annotation.annotator_id(db, annotator)
    for item_id in item_ids:
        completions = annotation.completions_of(db, item_id)
        scores = sorted({better(c.text) for c in completions}, reverse=True)
        groups = ranks_to_groups({c.position: scores.index(better(c.text)) for c in completions})
        annotation.submit_ranking(db, item_id, me, groups, list(range(len(completions))))


@pytest.fixture(scope="session")
def tiny_small_vocab_generator(tmp_path_factory) -> str:
    """A tiny generator whose random init ends completions early often enough to learn about length."""
    return str(save_tiny_generator(tmp_path_factory.mktemp("tiny-small-vocab"), vocab_size=48))


class ShorterIsBetter:
    """A scripted preference used directly as a reward function: minus the completion's length in characters / 10."""

    def score(self, prompts, completions):
        import torch

        return torch.tensor([-len(c) / 10 for c in completions])
