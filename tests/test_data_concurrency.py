"""Many annotators at once against one database file: nothing lost, nothing doubled, overlap kept, no lock errors."""

import threading

import pytest

from data import annotation, items, queue
from data.store import open_db
from tests.conftest import add_items

WRITERS, EACH, OVERLAP = 32, 50, 2


@pytest.mark.slow
def test_32_concurrent_annotators_each_submit_50_rankings(db, db_path):
    # enough items for everyone at overlap 2, and one more per writer: with exactly enough, the last free slot can fall
    # on an item its annotator already ranked (CI once ended 1,599 of 1,600 that way), which is right, not a loss
    add_items(db, WRITERS * EACH // OVERLAP + WRITERS, k=3)
    items.set_rankings_wanted(db, "test", OVERLAP)
    annotation.set_repeat_settings(db, "test", share=0.0, gap=20)  # first rankings only here: repeats in test_data_repeats
    errors, submitted = [], []

    def annotate(n: int) -> None:
        own = open_db(db_path)  # one connection per writer, as each browser session has
        me = annotation.annotator_id(own, f"annotator-{n}")
        try:
            for _ in range(EACH):
                item = queue.next_item(own, me)
                if item is None:
                    break
                saved = annotation.submit_ranking(own, item.id, me, [[n % 3], [(n + 1) % 3, (n + 2) % 3]], [0, 1, 2])
                submitted.append((item.id, me, saved.was_new))
        except Exception as error:  # noqa: BLE001  every error is a failure of the test
            errors.append(repr(error))
        finally:
            own.close()

    threads = [threading.Thread(target=annotate, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(submitted) == WRITERS * EACH and all(new for _, _, new in submitted)
    assert db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == WRITERS * EACH
    assert db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 2 * WRITERS * EACH  # 2 pairs each
    assert db.execute("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM rankings GROUP BY item_id)").fetchone()[0] <= OVERLAP
    assert db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM rankings GROUP BY item_id, annotator_id HAVING COUNT(*) > 1)").fetchone()[0] == 0
    assert db.execute("SELECT SUM(n_rankings) FROM items").fetchone()[0] == WRITERS * EACH


def test_an_item_shown_to_one_annotator_is_held_from_others_until_it_is_ranked(db):
    first, second = add_items(db, 2, k=2)
    alice, bob = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    assert queue.next_item(db, alice).id == first
    assert queue.next_item(db, alice).id == first  # a reload shows the same item
    assert queue.next_item(db, bob).id == second  # N=1: first is taken while alice holds it
    annotation.skip_item(db, first, alice, [0, 1])
    assert queue.next_item(db, annotation.annotator_id(db, "carol")).id == first  # released by the skip
