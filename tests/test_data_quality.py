"""The incremental statistics equal the reference (every ranking read into Python), however they are reached."""

import math
import random

import pytest

from bench.annotate_latency import seed
from data import annotation, gold, quality
from data.rankings import ranks_to_groups
from tests import reference_quality as reference
from tests.conftest import add_items


def same(new, old) -> bool:
    """Equal, floats to 1e-12 (sums taken in another order), recursively."""
    if isinstance(new, dict):
        return new.keys() == old.keys() and all(same(new[k], old[k]) for k in new)
    if isinstance(new, list):
        return len(new) == len(old) and all(same(a, b) for a, b in zip(new, old))
    if isinstance(new, float) and isinstance(old, float):
        return math.isclose(new, old, rel_tol=1e-12, abs_tol=1e-15)
    return new == old


def assert_equal_to_reference(db) -> None:
    assert same(quality.agreement_summary(db), reference.agreement_summary(db))
    assert same(quality.annotator_table(db), reference.annotator_table(db))
    assert same(quality.data_health(db), reference.data_health(db))
    assert same(quality.rankings_per_day(db), reference.rankings_per_day(db))


def rank_randomly(db, item_ids: list[int], names: list[str], rng: random.Random, k: int = 4) -> None:
    """Each name ranks each item with some probability, ties and seconds included."""
    for name in names:
        me = annotation.annotator_id(db, name)
        for item_id in item_ids:
            if rng.random() < 0.6:
                groups = ranks_to_groups({p: rng.randint(1, k) for p in range(k)})
                seconds = rng.choice([None, rng.uniform(1, 60), 7.0])
                if rng.random() < 0.1:
                    annotation.skip_item(db, item_id, me, annotation.display_order(item_id, me, k), seconds)
                else:
                    annotation.submit_ranking(db, item_id, me, groups, annotation.display_order(item_id, me, k), seconds)


def test_an_empty_store_gives_the_reference_figures(db):
    assert_equal_to_reference(db)


@pytest.mark.parametrize("seed_", [0, 1, 2])
def test_random_rankings_with_ties_skips_and_gold_equal_the_reference(db, seed_):
    rng = random.Random(seed_)
    ids = add_items(db, 30)
    gold.set_gold(db, ids[0], [[2], [0]])
    rank_randomly(db, ids, [f"annotator-{i}" for i in range(5)], rng)
    assert_equal_to_reference(db)


def test_new_rankings_after_a_refresh_are_added_incrementally(db):
    rng = random.Random(7)
    ids = add_items(db, 40)
    rank_randomly(db, ids[:20], ["a", "b", "c"], rng)
    assert quality.refresh(db) > 0
    assert quality.refresh(db) == 0  # nothing new: nothing read
    rank_randomly(db, ids, ["d", "e"], rng)  # new rankings on old and on new items
    gold.set_gold(db, ids[3], [[1], [0]])  # a gold answer on an item already ranked
    assert_equal_to_reference(db)
    assert quality.refresh(db) == 0


def test_a_refresh_reads_only_the_new_rankings(db, monkeypatch):
    ids = add_items(db, 20)
    rank_randomly(db, ids, ["a", "b"], random.Random(3))
    quality.refresh(db)
    seen = []
    original = quality._refresh_items
    monkeypatch.setattr(quality, "_refresh_items", lambda db_, item_ids, c: seen.extend(item_ids) or original(db_, item_ids, c))
    me = annotation.annotator_id(db, "late")
    annotation.submit_ranking(db, ids[5], me, [[0], [1], [2], [3]], [0, 1, 2, 3])
    assert quality.refresh(db) == 1 and seen == [ids[5]]


@pytest.mark.slow
def test_a_seeded_store_equals_the_reference(db):
    seed(db, n_prompts=600, k=4, n_rankings=2400, n_annotators=25)
    assert_equal_to_reference(db)


def test_item_consensus_equals_the_reference(db):
    ids = add_items(db, 3)
    rank_randomly(db, ids, ["a", "b", "c", "d"], random.Random(5))
    for item_id in ids:
        assert same(quality.item_consensus(db, item_id), reference.item_consensus(db, item_id))


@pytest.mark.parametrize("first_item", [
    [[[0], [1], [2]], [[0], [2], [1]]],
    [[[0, 1], [2]], [[2], [0, 1]], [[0], [1], [2]]],
    [[[0, 1, 2]], [[0], [1, 2]], [[1], [0], [2]], [[2], [1], [0]]],
])
def test_alpha_from_grouped_coincidences_equals_the_krippendorff_package(first_item):
    rankings = {0: {f"a{j}": (groups, 3) for j, groups in enumerate(first_item)}}
    rankings[1] = {"a0": ([[2], [1], [0]], 3), "a1": ([[2], [0, 1]], 3)}
    coincidences = {}
    for by_annotator in rankings.values():
        m = len(by_annotator)
        coincidences[m] = coincidences.get(m, 0) + quality.item_coincidences([g for g, _ in by_annotator.values()], 3)
    expected = reference.krippendorff_alpha(rankings)
    assert same(quality.krippendorff_alpha(coincidences), expected)
