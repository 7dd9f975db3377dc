"""Undo: an annotator takes back their last ranking or skip; every statistic stays equal to a recount (issue 20)."""

import random
import time

import pytest

from data import annotation, leaderboard, quality, queue, undo
from tests.conftest import add_items
from tests.test_data_leaderboard import random_rankings, reference_counts, stored_counts
from tests.test_data_quality import assert_equal_to_reference, rank_randomly


def submit(db, who: str, groups=((0,), (1,), (2, 3))) -> int:
    me = annotation.annotator_id(db, who)
    item = queue.next_item(db, me)
    annotation.submit_ranking(db, item.id, me, [list(g) for g in groups], annotation.display_order(item.id, me, 4))
    return item.id


def test_undo_returns_the_item_as_the_current_one_and_its_n(db):
    add_items(db, 3)
    first = submit(db, "alice")
    assert db.execute("SELECT n_rankings FROM items WHERE id = ?", [first]).fetchone()[0] == 1
    me = annotation.annotator_id(db, "alice")
    assert undo.undo_last(db, me) == first
    assert db.execute("SELECT n_rankings FROM items WHERE id = ?", [first]).fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 0
    assert queue.next_item(db, me).id == first  # held for them again
    with pytest.raises(ValueError, match="nothing to undo"):
        undo.undo_last(db, me)


def test_a_skip_can_be_taken_back_too(db):
    [item] = add_items(db, 1)
    me = annotation.annotator_id(db, "alice")
    annotation.skip_item(db, item, me, [0, 1, 2, 3])
    assert queue.next_item(db, me) is None
    undo.undo_last(db, me)
    assert queue.next_item(db, me).id == item


def test_only_within_the_window(db, monkeypatch):
    add_items(db, 1)
    submit(db, "alice")
    time.sleep(0.01)  # past the millisecond the ranking was stored in
    monkeypatch.setattr(undo, "UNDO_WINDOW_S", 0)
    with pytest.raises(ValueError, match="last 0 minutes"):
        undo.undo_last(db, annotation.annotator_id(db, "alice"))


@pytest.mark.parametrize("seed_", [0, 1])
def test_the_quality_statistics_after_undo_equal_a_recount(db, seed_):
    rng = random.Random(seed_)
    ids = add_items(db, 20)
    names = [f"annotator-{i}" for i in range(4)]
    rank_randomly(db, ids, names, rng)
    quality.refresh(db)  # counted before the undo
    for name in names[:3]:
        undo.undo_last(db, annotation.annotator_id(db, name))
    assert_equal_to_reference(db)
    rank_randomly(db, ids, names, rng)  # and more after it
    undo.undo_last(db, annotation.annotator_id(db, names[3]))
    assert_equal_to_reference(db)


def test_the_leaderboard_counts_after_undo_equal_a_recount(db):
    rng = random.Random(7)
    random_rankings(db, rng, 30)
    leaderboard.refresh(db)
    for who in ("ann", "bob", "cat"):
        undo.undo_last(db, annotation.annotator_id(db, who))
    assert stored_counts(db) == reference_counts(db)


def test_an_annotator_edits_their_own_ranking_until_it_is_reviewed(db):
    from data import review

    first, second = add_items(db, 2)
    me, other = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    ranking = annotation.submit_ranking(db, first, me, [[0], [1], [2, 3]], [0, 1, 2, 3], seconds=12.0, flags=["prompt unclear"],
                                        comment="close call").ranking_id
    created = db.execute("SELECT created_at FROM rankings WHERE id = ?", [ranking]).fetchone()[0]
    with pytest.raises(LookupError, match="not one of yours"):
        undo.edit_ranking(db, other, ranking, [[3], [2], [1], [0]])
    with pytest.raises(ValueError):
        undo.edit_ranking(db, me, ranking, [[3], [2]])  # not every completion
    edited = undo.edit_ranking(db, me, ranking, [[3], [2], [1], [0]])
    row = db.execute("SELECT groups, seconds, flags, comment, created_at, edited_at FROM rankings WHERE id = ?", [edited]).fetchone()
    assert row[:5] == ("[[3], [2], [1], [0]]", 12.0, '["prompt unclear"]', "close call", created) and row[5]
    assert db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 1
    assert db.execute("SELECT n_rankings FROM items WHERE id = ?", [first]).fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM comparisons WHERE ranking_id = ?", [edited]).fetchone()[0] == 6
    assert [r["editable"] for r in undo.my_rankings(db, me)] == [True]
    review.accept(db, edited, by="rita")
    assert [r["editable"] for r in undo.my_rankings(db, me)] == [False]
    with pytest.raises(ValueError, match="reviewed"):
        undo.edit_ranking(db, me, edited, [[0], [1], [2], [3]])
    assert second


@pytest.mark.parametrize("seed_", [0, 1])
def test_the_statistics_and_leaderboard_after_edits_equal_a_recount(db, seed_):
    rng = random.Random(seed_)
    ids = add_items(db, 20)
    names = [f"annotator-{i}" for i in range(4)]
    rank_randomly(db, ids, names, rng)
    random_rankings(db, rng, 30)  # items of named models, for the leaderboard (by ann, bob and cat)
    quality.refresh(db)
    leaderboard.refresh(db)  # counted before the edits
    for name in [*names, "ann", "bob", "cat"]:
        me = annotation.annotator_id(db, name)
        for row in undo.my_rankings(db, me)[:3]:
            if row["editable"]:
                order = list(range(row["k"]))
                rng.shuffle(order)
                undo.edit_ranking(db, me, row["id"], [[p] for p in order])
    assert_equal_to_reference(db)
    assert stored_counts(db) == reference_counts(db)
