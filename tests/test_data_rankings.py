import itertools
import random

import pytest

from data.rankings import (
    RankingError, groups_to_text, parse_ranking_text, ranking_from_input, ranking_to_pairs, tie_count,
    validate_ranking,
)


def as_tuples(pairs):
    return [(p.chosen, p.rejected, p.margin) for p in pairs]


def test_issue_example_d_c_a_tie_b():
    # D > C > A = B gives D>C, D>A, D>B, C>A, C>B
    assert as_tuples(ranking_to_pairs([[3], [2], [0, 1]])) == [(3, 2, 1), (3, 0, 2), (3, 1, 2), (2, 0, 1), (2, 1, 1)]


@pytest.mark.parametrize("k", range(2, 10))
def test_strict_ranking_gives_k_choose_2_pairs(k):
    order = list(range(k))
    random.Random(k).shuffle(order)
    pairs = ranking_to_pairs([[p] for p in order])
    assert len(pairs) == k * (k - 1) // 2
    rank = {p: i for i, p in enumerate(order)}
    assert all(rank[p.chosen] < rank[p.rejected] and p.margin == rank[p.rejected] - rank[p.chosen] for p in pairs)


@pytest.mark.parametrize("k", range(2, 10))
def test_all_tied_gives_no_pair(k):
    assert ranking_to_pairs([list(range(k))]) == []
    assert tie_count([list(range(k))]) == k * (k - 1) // 2


@pytest.mark.parametrize("k", range(2, 10))
def test_random_ties_give_exactly_the_untied_pairs(k):
    rng = random.Random(100 + k)
    ranks = {p: rng.randint(1, 3) for p in range(k)}
    groups = [sorted(p for p in ranks if ranks[p] == r) for r in sorted(set(ranks.values()))]
    expected = {(a, b) for a, b in itertools.permutations(range(k), 2) if ranks[a] < ranks[b]}
    assert {(p.chosen, p.rejected) for p in ranking_to_pairs(groups)} == expected


@pytest.mark.parametrize("groups, k, message", [
    ([[0], [1]], 3, "C has none"),
    ([[0], [0, 1]], 2, "A ranked more than once"),
    ([[0], [5]], 2, "do not exist"),
    ([[0], []], 1, "between 2 and 9"),
    ([[0], [], [1]], 2, "empty group"),
])
def test_invalid_rankings_are_refused_with_a_reason(groups, k, message):
    with pytest.raises(RankingError, match=message):
        validate_ranking(groups, k)


@pytest.mark.parametrize("typed", ["D > C > A = B", "d>c>a=b", "DCA=B", "D C A = B", "D, C, A=B"])
def test_typed_rankings(typed):
    assert parse_ranking_text(typed, [0, 1, 2, 3]) == [[3], [2], [0, 1]]


def test_typed_letters_map_to_the_shown_order():
    # The annotator saw position 2 as A, 0 as B, 1 as C.
    assert parse_ranking_text("B > A = C", [2, 0, 1]) == [[0], [2, 1]]
    assert groups_to_text([[3], [2], [0, 1]]) == "D > C > A = B"


@pytest.mark.parametrize("typed, message", [("D > X", "cannot read"), ("", "type a ranking"), ("A > E", "no completion E")])
def test_unreadable_typed_rankings(typed, message):
    with pytest.raises(RankingError, match=message):
        parse_ranking_text(typed, [0, 1, 2, 3])


def test_form_input_with_a_missing_rank_is_refused_naming_the_shown_letter():
    with pytest.raises(RankingError, match="B has none"):
        ranking_from_input("", [1, None, 2], [2, 0, 1])


def test_form_input_maps_shown_letters_to_positions():
    # shown A=pos 2, B=pos 0, C=pos 1; ranks: A best, B and C tied
    assert ranking_from_input("", [1, 2, 2], [2, 0, 1]) == [[2], [0, 1]]
    assert ranking_from_input("C > A = B", [None] * 3, [2, 0, 1]) == [[1], [0, 2]]
