import random

import krippendorff
import numpy as np
import pytest
from scipy.stats import kendalltau

from data import agreement, annotation, items, prompt_sets, quality
from data.rankings import ranking_to_pairs, ranks_to_groups
from tests.conftest import add_items
from tests.reference_quality import kendall_tau_b, krippendorff_alpha


def test_pair_agreement_reports_ties_apart():
    # a: A > B > C = D ; b: B > A > C > D
    result = agreement.pair_agreement([[0], [1], [2, 3]], [[1], [0], [2], [3]], 4)
    # pairs: AB disagree; AC, AD, BC, BD agree; CD tied by a only
    assert result == agreement.PairAgreement(agree=4, disagree=1, both_tied=0, one_tied=1)
    assert result.rate == pytest.approx(0.8)


def test_kendall_tau_b_matches_a_hand_computed_case_and_scipy():
    # concordant 4, discordant 1, one pair tied in a only: tau_b = (4 - 1) / sqrt(5 * 6)
    assert kendall_tau_b([[0], [1], [2, 3]], [[1], [0], [2], [3]], 4) == pytest.approx(3 / np.sqrt(30))
    rng = random.Random(0)
    for _ in range(20):
        k = rng.randint(2, 9)
        a = [rng.randint(1, 3) for _ in range(k)]
        b = [rng.randint(1, 3) for _ in range(k)]
        groups = lambda r: [[p for p in range(k) if r[p] == v] for v in sorted(set(r))]  # noqa: E731
        expected = kendalltau(a, b).statistic
        got = kendall_tau_b(groups(a), groups(b), k)
        assert (got is None and np.isnan(expected)) or got == pytest.approx(expected)


def test_krippendorff_alpha_matches_the_reference_package():
    by_item = {1: {"a": ([[0], [1], [2]], 3), "b": ([[0], [2], [1]], 3)},
               2: {"a": ([[1], [0, 2]], 3), "b": ([[1], [0], [2]], 3), "c": ([[2], [1], [0]], 3)},
               3: {"a": ([[0], [1]], 2)}}  # a single ranking: not a shared item
    data = np.array([[1, 2, 3, 2, 1, 2], [1, 3, 2, 2, 1, 3], [np.nan] * 3 + [3, 2, 1]])
    assert krippendorff_alpha(by_item) == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    assert krippendorff_alpha({1: {"a": ([[0], [1]], 2), "b": ([[0], [1]], 2)}}) == 1.0  # full agreement
    assert krippendorff_alpha({1: {"a": ([[0, 1]], 2), "b": ([[0, 1]], 2)}}) is None  # no variation at all


def test_bradley_terry_orders_by_wins_and_bounds_its_intervals():
    strengths = agreement.bradley_terry([(0, 1), (0, 2), (1, 2), (0, 1)], 3)
    assert strengths[0] > strengths[1] > strengths[2] and sum(strengths) == pytest.approx(0)
    rows = agreement.bradley_terry_with_intervals([[[0], [1], [2]], [[0], [2], [1]], [[0], [1, 2]]], 3, resamples=50)
    assert rows[0]["strength"] == max(r["strength"] for r in rows)
    assert all(r["low"] <= r["strength"] <= r["high"] for r in rows)


def reference_bradley_terry(pairs, k, iterations=200, prior=0.5):
    """The first implementation, one fit at a time: the vectorised one must give the same numbers."""
    wins = np.full((k, k), prior)
    np.fill_diagonal(wins, 0.0)
    for w, l in pairs:
        wins[w, l] += 1
    games = wins + wins.T
    strength = np.ones(k)
    for _ in range(iterations):
        denominator = (games / (strength[:, None] + strength[None, :])).sum(1)
        strength = wins.sum(1) / denominator
        strength /= np.exp(np.log(strength).mean())
    log_strength = np.log(strength)
    return (log_strength - log_strength.mean()).tolist()


def reference_bradley_terry_with_intervals(rankings, k, resamples=200, seed=0):
    def fit(sample):
        return reference_bradley_terry([(p.chosen, p.rejected) for g in sample for p in ranking_to_pairs(g)], k)

    point = fit(rankings)
    rng = random.Random(seed)
    draws = np.array([fit([rng.choice(rankings) for _ in rankings]) for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return [{"position": p, "strength": point[p], "low": float(low[p]), "high": float(high[p])} for p in range(k)]


def random_ranking(rng: random.Random, k: int) -> list[list[int]]:
    """Random rank numbers, so that ties are common."""
    return ranks_to_groups({p: rng.randint(1, k) for p in range(k)})


@pytest.mark.parametrize("k", range(2, 10))
def test_vectorised_bradley_terry_equals_the_reference(k):
    rng = random.Random(k)
    for n in range(1, 6):
        rankings = [random_ranking(rng, k) for _ in range(n)]
        resamples = 100 if n == 3 else 20  # the export's 100 once; fewer keep the reference quick
        got = agreement.bradley_terry_with_intervals(rankings, k, resamples=resamples, seed=n)
        expected = reference_bradley_terry_with_intervals(rankings, k, resamples=resamples, seed=n)
        for field in ("strength", "low", "high"):
            assert np.allclose([r[field] for r in got], [r[field] for r in expected], rtol=0, atol=1e-9), (field, rankings)
        pairs = [(p.chosen, p.rejected) for g in rankings for p in ranking_to_pairs(g)]
        assert np.allclose(agreement.bradley_terry(pairs, k), reference_bradley_terry(pairs, k), rtol=0, atol=1e-9)


def test_dashboard_figures_from_the_store(db):
    ids = add_items(db, 4, k=3)
    items.set_rankings_wanted(db, "test", 2)
    alice, bob = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    for i in ids:
        # completion text grows with position: "completion i.j word word ..." -> position 2 is longest
        annotation.submit_ranking(db, i, alice, [[2], [1], [0]], [2, 1, 0], seconds=3.0)  # alice: longest best, first shown
        annotation.submit_ranking(db, i, bob, [[2], [0, 1]], [0, 1, 2], seconds=5.0, flags=["all are bad"] if i == ids[0] else [])
    summary = quality.agreement_summary(db)
    assert summary["shared_items"] == 4
    assert summary["pairwise_agreement"] == 1.0 and summary["pairs_one_tied"] == 4
    table = {row["annotator"]: row for row in quality.annotator_table(db)}
    assert table["alice"]["longer_wins"] == 1.0 and table["alice"]["first_shown_ranked_best"] == 1.0
    assert table["bob"]["tie_rate"] == pytest.approx(1 / 3) and table["bob"]["median_seconds"] == 5.0
    assert table["bob"]["agreement_with_others"] == 1.0
    health = quality.data_health(db)
    assert health["flagged_items"] == 1 and health["coverage"] == 1.0 and health["items"] == 4
    add_items(db, 6, k=3, prompt_set="demo")
    prompt_sets.configure(db, "demo", status="paused")  # a paused set's unranked items are not work left
    assert quality.data_health(db)["coverage"] == 1.0 and quality.data_health(db)["items"] == 4
    consensus = quality.item_consensus(db, ids[0])
    assert consensus[0]["completion"] == "C"
