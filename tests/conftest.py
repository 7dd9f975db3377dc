import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from data import items  # noqa: E402
from data.store import open_db  # noqa: E402
from tests.tiny import save_tiny_generator  # noqa: E402


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "test.db"


@pytest.fixture
def db(db_path):
    database = open_db(db_path)
    yield database
    database.close()


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
