import pytest

from data import annotation, export, gold, items, queue
from data.export import ExportFilter
from tests.conftest import add_items


def test_gold_items_are_mixed_in_at_their_rate_and_graded_silently(db):
    first, second, third, gold_item = add_items(db, 4, k=3)
    gold.set_gold(db, gold_item, [[2], [0]])  # only the pair C > A is expected
    gold.set_gold_every(db, "test", 2)
    items.set_rankings_wanted(db, "test", 2)
    alice = annotation.annotator_id(db, "alice")
    served = []
    for _ in range(4):
        item = queue.next_item(db, alice)
        served.append(item.id)
        annotation.submit_ranking(db, item.id, alice, [[0], [1], [2]], [0, 1, 2])  # A first: fails the gold
    assert served == [first, gold_item, second, third]  # the second item served is gold
    bob = annotation.annotator_id(db, "bob")
    annotation.submit_ranking(db, gold_item, bob, [[2], [1], [0]], [0, 1, 2])
    assert gold.accuracy_by_annotator(db) == {"alice": 0.0, "bob": 1.0}
    assert queue.next_item(db, annotation.annotator_id(db, "carol")).id != gold_item  # carol is due gold only at her 2nd


def test_a_paused_set_serves_no_gold_either(db):
    """Gold came from any set with a rate, paused, archived or assigned to others included."""
    from data import prompt_sets

    _, gold_item = add_items(db, 2, k=3)
    gold.set_gold(db, gold_item, [[2], [0]])
    gold.set_gold_every(db, "test", 1)  # every item would be gold
    alice = annotation.annotator_id(db, "alice")
    assert queue.gold_item_due(db, alice) == gold_item
    prompt_sets.configure(db, "test", status="paused")
    assert queue.gold_item_due(db, alice) is None and queue.next_item(db, alice) is None


def test_a_gold_answer_must_order_a_pair(db):
    [item] = add_items(db, 1, k=2)
    with pytest.raises(ValueError, match="at least one pair"):
        gold.set_gold(db, item, [[0, 1]])


def test_exports_filter_by_quality_and_keep_provenance(db):
    ids = add_items(db, 3, k=2)
    items.set_rankings_wanted(db, "test", 2)
    gold.set_gold(db, ids[2], [[0], [1]])
    alice, bob, carol = (annotation.annotator_id(db, n) for n in ("alice", "bob", "carol"))
    for item in ids[:2]:
        annotation.submit_ranking(db, item, alice, [[0], [1]], [0, 1])
        annotation.submit_ranking(db, item, bob, [[0], [1]], [0, 1])
    annotation.submit_ranking(db, ids[0], carol, [[1], [0]], [0, 1])  # disagrees with the others
    annotation.submit_ranking(db, ids[2], alice, [[0], [1]], [0, 1])  # passes gold
    annotation.submit_ranking(db, ids[2], bob, [[1], [0]], [0, 1])  # fails gold
    everything = export.export_frame(db, "pairs")
    assert {"annotator_agreement", "annotator_gold_accuracy", "is_gold", "ties_in_ranking", "margin"} <= set(everything.columns)
    assert everything[everything.item_id == ids[2]]["is_gold"].all()
    carols = everything[everything.annotator == "carol"].iloc[0]  # what her 0.0 rests on: one pair of one shared item
    assert (carols.annotator_agreement, carols.annotator_agreement_pairs, carols.annotator_gold_rankings) == (0.0, 1, 0)
    assert set(export.export_frame(db, "pairs", ExportFilter(min_agreement=0.5)).annotator) == {"alice", "bob"}
    assert set(export.export_frame(db, "pairs", ExportFilter(min_gold_accuracy=1.0)).annotator) == {"alice", "carol"}
    assert set(export.export_frame(db, "pairs", ExportFilter(exclude_annotators=["alice"])).annotator) == {"bob", "carol"}
    complete = export.export_frame(db, "pairs", ExportFilter(complete_only=True))
    assert set(complete.item_id) == set(ids)  # every item has its 2 rankings
    rankings = export.export_frame(db, "rankings")
    row = rankings[rankings.item_id == ids[0]].iloc[0]
    assert len(row.consensus_strength) == 2 and row.consensus_strength[0] > row.consensus_strength[1]
    assert all(lo <= s <= hi for lo, s, hi in zip(row.consensus_low, row.consensus_strength, row.consensus_high))


@pytest.mark.parametrize("expected", [[[0], [0]], [[0], [1], [0]], [[0], []], [[0], [7]]])
def test_an_impossible_gold_answer_is_refused(db, expected):
    """Finding 15 of the third trust pass: A > A or A > B > A was accepted, and nobody could pass it."""
    [item] = add_items(db, 1)
    with pytest.raises(ValueError, match="at most once|orders only those|at least one pair"):
        gold.set_gold(db, item, expected)
    assert db.execute("SELECT COUNT(*) FROM gold").fetchone()[0] == 0
