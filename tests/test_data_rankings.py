import itertools
import random

import pytest

from data.rankings import (
    RankingError, groups_to_text, parse_ranking_text, ranking_from_input, ranking_to_pairs, repaired_ranking, tie_count,
    validate_order, validate_ranking,
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
    ([[0.0], [1.0]], 2, "whole numbers"),
    ([[True], [False]], 2, "whole numbers"),
    ("AB", 2, "list of groups"),
    ([0, 1], 2, "list of groups"),
])
def test_invalid_rankings_are_refused_with_a_reason(groups, k, message):
    with pytest.raises(RankingError, match=message):
        validate_ranking(groups, k)


@pytest.mark.parametrize("typed", ["D > C > A = B", "d>c>a=b", "DCA=B", "D C A = B", "D, C, A=B", " D  >C  A =B ", "D,C,A=B"])
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


# Finding 5: a typo about ties is an error that says what to type, never a different ranking.
@pytest.mark.parametrize("typed, message", [
    ("A==B>C>D", "'=' ties two letters"),
    ("A = = B > C > D", "'=' ties two letters"),
    ("A=", "'=' ties two letters"),
    ("=A", "'=' ties two letters"),
    ("A=>B", "'=' ties two letters"),
    ("A>=B", "'=' ties two letters"),
    ("A=,B", "'=' ties two letters"),
    ("A>>B", "put one '>'"),
    ("A > > B", "put one '>'"),
    ("A >, B", "put one '>'"),
    ("> A > B", "put one '>'"),
    ("A > B >", "put one '>'"),
    ("=", "'=' ties two letters"),
])
def test_ambiguous_typed_rankings_are_refused(typed, message):
    with pytest.raises(RankingError, match=message):
        parse_ranking_text(typed, [0, 1, 2, 3])


@pytest.mark.parametrize("order, k", [([0, 0], 2), ([0, 1], 3), ([1.0, 0.0], 2), ([True, False], 2), ("01", 2), (None, 2)])
def test_bad_display_orders_are_refused(order, k):
    with pytest.raises(RankingError, match="display order"):
        validate_order(order, k)


SOUND = {"skipped": 0, "groups": "[[1], [0, 2]]", "display_order": "[2, 0, 1]", "seconds": 4.5,
         "flags": '["prompt unclear"]', "created_at": "2024-05-01T10:00:00.000+00:00"}
FLAGS = ("all are bad", "prompt unclear")


@pytest.mark.parametrize("bad, repaired", [
    ({}, {}),
    ({"groups": "[[1.0], [0, 2.0]]"}, {"groups": "[[1], [0, 2]]"}),
    ({"groups": "[[0, 2], [1]]"}, {}),
    ({"groups": "[[1], [0]]"}, {"groups": None, "skipped": 1}),
    ({"groups": "[[1], [0, 2, 2]]"}, {"groups": None, "skipped": 1}),
    ({"groups": "[[true], [0, 2]]"}, {"groups": None, "skipped": 1}),
    ({"groups": "{not json"}, {"groups": None, "skipped": 1}),
    ({"groups": None}, {"skipped": 1}),
    ({"groups": 7}, {"groups": None, "skipped": 1}),
    ({"skipped": 1}, {"groups": None}),
    ({"seconds": "slow"}, {"seconds": None}),
    ({"seconds": -3.0}, {"seconds": None}),
    ({"display_order": "[0, 0, 1]"}, {"display_order": "[0, 1, 2]"}),
    ({"display_order": "oops"}, {"display_order": "[0, 1, 2]"}),
    ({"flags": '["nope"]'}, {"flags": "[]"}),
    ({"flags": '"all are bad"'}, {"flags": "[]"}),
    ({"created_at": "yesterday"}, {"created_at": "ITEM TIME"}),
    ({"created_at": "2024-05-01T12:00:00+02:00"}, {"created_at": "2024-05-01T10:00:00.000+00:00"}),
])
def test_stored_rankings_are_repaired_column_by_column(bad, repaired):
    assert repaired_ranking({**SOUND, **bad}, 3, FLAGS, "ITEM TIME") == repaired
