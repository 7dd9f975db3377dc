"""Each annotator's training weight: from agreement with the others, gold and self-consistency, shrunk towards the
team's with few observations, 0 for an annotator who carries no signal."""

import random

import pytest

from data import annotation, gold, queue, reliability
from tests.conftest import add_items

TRUTH = [[0], [1], [2], [3]]  # A > B > C > D, what a careful annotator sees on every item


def rank(db, name: str, item_ids: list[int], how, rng: random.Random) -> None:
    me = annotation.annotator_id(db, name)
    for item_id in item_ids:
        annotation.submit_ranking(db, item_id, me, how(rng), annotation.display_order(item_id, me, 4))


def careful(rng):
    return TRUTH if rng.random() < 0.9 else [[1], [0], [2], [3]]  # one slip in ten


def contrary(rng):
    return TRUTH[::-1]


def shuffled(rng):
    order = [0, 1, 2, 3]
    rng.shuffle(order)
    return [[i] for i in order]


@pytest.fixture
def team(db):
    """Five careful annotators, one who ranks at random and one who ranks everything backwards, on the same 40
    items; a newcomer with two rankings; two gold items."""
    rng = random.Random(0)
    ids = add_items(db, 40)
    for item_id in ids[:2]:
        gold.set_gold(db, item_id, TRUTH)
    for name in ("ann", "bea", "cy", "dee", "eve"):
        rank(db, name, ids, careful, rng)
    rank(db, "random", ids, shuffled, rng)
    rank(db, "contrary", ids, contrary, rng)
    rank(db, "newcomer", ids[2:4], contrary, rng)
    return {row["annotator"]: row for row in reliability.reliability(db)}


def test_careful_annotators_weigh_more_than_the_team_and_noise_weighs_nothing(team):
    for name in ("ann", "bea", "cy", "dee", "eve"):
        assert 1.0 < team[name]["weight"] <= reliability.MAX_WEIGHT
    assert team["contrary"]["weight"] == 0.0  # contradicts the others and fails gold: no signal to trust
    assert team["random"]["weight"] < 0.25
    assert team["contrary"]["agreement"] < 0.1 and team["contrary"]["gold"] == 0.0


def test_a_newcomer_with_two_contrary_rankings_stays_near_the_team(team):
    assert team["newcomer"]["agreement_n"] > 0  # their pairs were compared with the others'
    assert 0.2 < team["newcomer"]["weight"] < 1.0  # pulled down, but two rankings cannot zero anyone


def test_self_consistency_counts_when_there_are_repeats(db, monkeypatch):
    """Two annotators who agree on every first ranking; one ranks each repeat the same way, the other backwards."""
    add_items(db, 12)
    annotation.set_repeat_settings(db, "test", share=0.5, gap=1)
    monkeypatch.setattr(queue, "repeat_draw", lambda annotator, answered: 0.0)  # a repeat whenever one is due
    for name, on_repeat in (("steady", TRUTH), ("fickle", TRUTH[::-1])):
        me = annotation.annotator_id(db, name)
        for _ in range(12):
            item = queue.next_item(db, me)
            if item is None:
                break
            order = annotation.display_order(item.id, me, item.k, repeat=item.repeat_of is not None)
            annotation.submit_ranking(db, item.id, me, on_repeat if item.repeat_of else TRUTH, order, repeat_of=item.repeat_of)
    table = {row["annotator"]: row for row in reliability.reliability(db)}
    assert table["steady"]["self"] == 1.0 and table["fickle"]["self"] == 0.0 and table["fickle"]["self_n"] >= 12
    assert table["fickle"]["weight"] < 1.0 < table["steady"]["weight"]


def test_an_annotator_with_nothing_to_compare_weighs_one(db):
    ids = add_items(db, 4)
    me = annotation.annotator_id(db, "solo")
    for item_id in ids:
        annotation.submit_ranking(db, item_id, me, TRUTH, annotation.display_order(item_id, me, 4))
    [alone] = reliability.reliability(db)
    assert alone["weight"] == 1.0 and alone["self"] is None  # nobody to compare with, no gold, no repeats: 1


def test_weights_reach_the_trainers_examples(db, team):
    from training.rankings import load_rankings, weighted_by_reliability, weights_line

    examples = weighted_by_reliability(db, load_rankings(db))
    by_name = {e.annotator: e.weight for e in examples}
    assert by_name["contrary"] == 0.0 and by_name["ann"] == pytest.approx(team["ann"]["weight"])
    assert "contrary 0.00" in weights_line(examples) and "random" in weights_line(examples)
    assert all(e.weight == 1.0 for e in load_rankings(db))  # unweighted unless asked
