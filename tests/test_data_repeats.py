"""Self-consistency: a share of each annotator's queue re-serves an item they ranked, stored apart and compared at once."""

import datetime
import math

import pytest

from data import annotation, export, gold, guidelines, items, quality, queue
from data.accounts import create_user
from tests.conftest import add_items


def rank_next(db, annotator: int, groups=((0,), (1,), (2, 3))):
    """Serve the next item and rank it the way the annotate page does; returns the item served."""
    item = queue.next_item(db, annotator)
    order = annotation.display_order(item.id, annotator, item.k, repeat=item.repeat_of is not None)
    annotation.submit_ranking(db, item.id, annotator, [list(g) for g in groups], order,
                              guideline_version=item.guideline.version if item.guideline else None, repeat_of=item.repeat_of)
    return item


@pytest.fixture
def alice(db, monkeypatch):
    """An annotator whose every draw asks for a repeat (as a share of 100% would; the store caps it at 50%), gap 3."""
    add_items(db, 8, k=4)
    annotation.set_repeat_settings(db, "test", share=0.5, gap=3)
    monkeypatch.setattr(queue, "repeat_draw", lambda annotator, answered: 0.0)
    return annotation.annotator_id(db, "alice")


def first_ranking(db, item_id: int, annotator: int) -> int:
    return db.execute("SELECT id FROM rankings WHERE item_id = ? AND annotator_id = ?", [item_id, annotator]).fetchone()[0]


def test_a_repeat_is_served_after_the_gap_and_not_before(db, alice):
    served = [rank_next(db, alice) for _ in range(4)]  # after the 3rd, the 1st has only 2 rankings after it
    assert [item.repeat_of for item in served] == [None] * 4
    repeat = queue.next_item(db, alice)
    assert repeat.id == served[0].id and repeat.repeat_of == first_ranking(db, served[0].id, alice)
    assert queue.next_item(db, alice) == repeat  # a reload serves it again


def test_a_day_old_ranking_is_repeated_whatever_the_gap(db, alice):
    annotation.set_repeat_settings(db, "test", share=0.5, gap=1000)
    first = rank_next(db, alice)
    assert queue.next_item(db, alice).repeat_of is None
    db.execute("DELETE FROM reservations")
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=25)
    db.execute("UPDATE rankings SET created_at = ?", [yesterday.isoformat(timespec="milliseconds")])
    db.conn.commit()
    assert queue.next_item(db, alice).id == first.id


def test_no_repeat_at_share_zero(db, alice):
    annotation.set_repeat_settings(db, "test", share=0.0, gap=1)
    assert [rank_next(db, alice).repeat_of for _ in range(8)] == [None] * 8
    assert queue.next_item(db, alice) is None  # nothing left: an annotator who is done gets no repeats either


def test_the_decision_is_the_same_after_the_reservation_expires(db):
    add_items(db, 40, k=2)
    annotation.set_repeat_settings(db, "test", share=0.5, gap=1)
    me = annotation.annotator_id(db, "alice")
    decisions = []
    for _ in range(30):
        item = queue.next_item(db, me)
        db.execute("DELETE FROM reservations")  # as if it expired before the annotator came back
        assert queue.next_item(db, me) == item
        decisions.append(item.repeat_of is not None)
        annotation.submit_ranking(db, item.id, me, [[0], [1]], [0, 1], repeat_of=item.repeat_of)
    assert 0 < sum(decisions) < 30  # about half, drawn per answer count


def test_a_repeat_is_shown_in_another_order():
    for k in range(2, 8):
        for item_id in range(20):
            first, again = annotation.display_order(item_id, 3, k), annotation.display_order(item_id, 3, k, repeat=True)
            assert sorted(again) == list(range(k)) and again != first
            assert annotation.display_order(item_id, 3, k, repeat=True) == again  # stable across reloads
    assert annotation.display_order(5, 1, 2, repeat=True) == annotation.display_order(5, 1, 2)[::-1]


def test_a_repeat_is_stored_apart_and_changes_no_vote(db, alice):
    for _ in range(4):
        rank_next(db, alice)
    counts = lambda: [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("rankings", "comparisons")]  # noqa: E731
    before = (counts(), db.execute("SELECT SUM(n_rankings) FROM items").fetchone()[0], queue.items_left(db, alice),
              export.export_frame(db, "pairs").to_dict("records"), export.export_frame(db, "rankings").to_dict("records"),
              quality.annotator_table(db))
    ranked = queue.ranked_count(db, alice)
    repeat = rank_next(db, alice, groups=((1,), (0,), (2,), (3,)))
    assert repeat.repeat_of is not None
    after = (counts(), db.execute("SELECT SUM(n_rankings) FROM items").fetchone()[0], queue.items_left(db, alice),
             export.export_frame(db, "pairs").to_dict("records"), export.export_frame(db, "rankings").to_dict("records"),
             quality.annotator_table(db))
    assert after == before
    assert queue.ranked_count(db, alice) == ranked + 1  # what the annotator sees moves, as for any ranking
    assert db.execute("SELECT COUNT(*) FROM repeat_rankings").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0


def test_self_agreement_with_ties_is_computed_at_submission(db, alice):
    for _ in range(4):
        rank_next(db, alice)  # A > B > C = D
    repeat = rank_next(db, alice, groups=((1,), (0,), (2,), (3,)))  # B > A > C > D
    row = db.execute("SELECT agree, disagree, tau_b, skipped, groups FROM repeat_rankings").fetchone()
    # pairs: AB reversed; AC, AD, BC, BD the same; CD tied the first time only. tau-b = (4 - 1) / sqrt((6 - 1) * (6 - 0))
    assert row[:2] == (4, 1) and math.isclose(row[2], 3 / math.sqrt(30)) and row[3] == 0 and row[4] == "[[1], [0], [2], [3]]"
    assert repeat.repeat_of == first_ranking(db, repeat.id, alice)


def test_an_all_tied_or_skipped_repeat_has_no_tau(db):
    first, second = add_items(db, 2, k=3)
    me = annotation.annotator_id(db, "alice")
    ids = [annotation.submit_ranking(db, item, me, [[0], [1], [2]], [0, 1, 2]).ranking_id for item in (first, second)]
    annotation.submit_ranking(db, first, me, [[0, 1, 2]], [2, 1, 0], repeat_of=ids[0])
    annotation.skip_item(db, second, me, [2, 1, 0], repeat_of=ids[1])
    rows = db.execute("SELECT ranking_id, skipped, agree, disagree, tau_b FROM repeat_rankings ORDER BY id").fetchall()
    assert rows == [(ids[0], 0, 0, 0, None), (ids[1], 1, 0, 0, None)]


def test_a_double_submit_of_a_repeat_returns_the_stored_one(db):
    [item] = add_items(db, 1, k=2)
    me = annotation.annotator_id(db, "alice")
    first = annotation.submit_ranking(db, item, me, [[0], [1]], [0, 1]).ranking_id
    once = annotation.submit_ranking(db, item, me, [[1], [0]], [1, 0], repeat_of=first)
    twice = annotation.submit_ranking(db, item, me, [[0], [1]], [1, 0], repeat_of=first)
    assert once.was_new and not twice.was_new and twice.ranking_id == once.ranking_id
    assert db.execute("SELECT COUNT(*), MAX(disagree) FROM repeat_rankings").fetchone() == (1, 1)


def test_a_repeat_of_a_ranking_that_is_not_yours_is_refused(db):
    first, second = add_items(db, 2, k=2)
    alice, bob = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    hers = annotation.submit_ranking(db, first, alice, [[0], [1]], [0, 1]).ranking_id
    annotation.submit_ranking(db, first, bob, [[0], [1]], [0, 1])
    skipped = annotation.skip_item(db, second, alice, [0, 1]).ranking_id
    for item, who, repeat_of in ((first, bob, hers), (second, alice, hers), (second, alice, skipped)):
        with pytest.raises(ValueError, match="is not your ranking of item"):
            annotation.submit_ranking(db, item, who, [[1], [0]], [1, 0], repeat_of=repeat_of)
    assert db.execute("SELECT COUNT(*) FROM repeat_rankings").fetchone()[0] == 0


def test_only_a_repeat_as_served_is_stored_as_one_never_an_import_or_a_script(db, alice):
    for _ in range(4):
        rank_next(db, alice)
    repeat = queue.next_item(db, alice)
    first = db.execute("SELECT groups, flags FROM rankings WHERE id = ?", [repeat.repeat_of]).fetchone()
    # The same item and annotator without repeat_of (an import of this store's own export, a script): a double submit.
    saved = annotation.submit_ranking(db, repeat.id, alice, [[0], [1], [2], [3]], [3, 2, 1, 0])
    assert not saved.was_new and saved.ranking_id == repeat.repeat_of
    assert db.execute("SELECT COUNT(*) FROM repeat_rankings").fetchone()[0] == 0
    assert db.execute("SELECT groups, flags FROM rankings WHERE id = ?", [repeat.repeat_of]).fetchone() == first
    # As served, with a flag and a comment: kept with the repeat.
    annotation.submit_ranking(db, repeat.id, alice, [[0], [1], [2], [3]], [3, 2, 1, 0], flags=["offensive/unsafe"],
                              comment=" rude ", repeat_of=repeat.repeat_of)
    assert db.execute("SELECT flags, comment FROM repeat_rankings").fetchone() == ('["offensive/unsafe"]', "rude")
    assert queue.next_item(db, alice).repeat_of != repeat.repeat_of  # the repeat is released


def test_gold_skipped_and_edited_items_are_never_repeated(db, alice):
    ids = [row[0] for row in db.execute("SELECT id FROM items ORDER BY id")]
    gold.set_gold(db, ids[0], [[0], [1]])
    annotation.skip_item(db, ids[1], alice, [0, 1, 2, 3])
    db.execute("UPDATE items SET origin = 'demonstration' WHERE id = ?", [ids[2]])
    for item in ids[:3]:
        annotation.submit_ranking(db, item, alice, [[0], [1], [2], [3]], [0, 1, 2, 3])
    for _ in range(4):
        rank_next(db, alice)
    repeat = queue.next_item(db, alice)
    assert repeat.id == ids[3] and repeat.repeat_of is not None


def test_a_repeat_held_by_one_annotator_does_not_hold_the_item_from_others(db, alice):
    items.set_rankings_wanted(db, "test", 2)
    first = [rank_next(db, alice) for _ in range(4)][0]
    assert queue.next_item(db, alice).id == first.id  # a repeat, held by alice
    annotation.set_repeat_settings(db, "test", share=0.0, gap=3)  # none for bob
    bob = annotation.annotator_id(db, "bob")
    for item in range(5, 9):  # the unranked items go first
        annotation.submit_ranking(db, item, bob, [[0], [1], [2], [3]], [0, 1, 2, 3])
    assert queue.next_item(db, bob).id == first.id  # it still wants its 2nd ranking


def test_served_items_carry_the_current_guidelines_and_rankings_store_their_version(db, alice):
    admin = create_user(db, "admin", "admin-password", role="admin")
    assert queue.next_item(db, alice).guideline is None
    guidelines.save_guidelines(db, "test", "Prefer **short** answers.", admin)
    item = rank_next(db, alice)
    assert item.guideline == annotation.Guideline(1, "Prefer **short** answers.")
    guidelines.save_guidelines(db, "test", "Prefer correct answers.", admin)
    for _ in range(3):
        rank_next(db, alice)
    repeat = rank_next(db, alice)
    assert repeat.repeat_of is not None and repeat.guideline.version == 2
    assert [row[0] for row in db.execute("SELECT guideline_version FROM rankings ORDER BY id")] == [1, 2, 2, 2]
    assert db.execute("SELECT guideline_version FROM repeat_rankings").fetchone()[0] == 2


@pytest.mark.parametrize("share, gap, message", [(0.6, 20, "between 0 and 50%"), (-0.1, 20, "between 0 and 50%"),
                                                 (0.05, 0, "at least 1"), (0.05, 20, "no prompt set")])
def test_repeat_settings_are_checked(db, share, gap, message):
    add_items(db, 1, k=2)
    with pytest.raises(ValueError, match=message):
        annotation.set_repeat_settings(db, "test" if message != "no prompt set" else "missing", share, gap)
    assert annotation.repeat_settings(db, "test") == {"repeat_share": 0.05, "repeat_gap": 20}
