"""Rank-aware agreement and annotator quality, with ties. Pure functions over rankings.

A ranking is a list of groups of completion positions, best first (ties share a group).
"""

import math
import random
import statistics
from dataclasses import dataclass

import numpy as np

from data.rankings import ranking_to_pairs

Z95 = 1.96


def ranks(groups: list[list[int]], k: int) -> list[int]:
    """Rank number of each position (1 = best; tied completions share a rank).

    >>> ranks([[3], [2], [0, 1]], 4)
    [3, 3, 2, 1]
    """
    out = [0] * k
    for g, group in enumerate(groups, start=1):
        for p in group:
            out[p] = g
    return out


@dataclass
class PairAgreement:
    agree: int  # both strict, same direction
    disagree: int  # both strict, opposite directions
    both_tied: int
    one_tied: int  # one annotator tied what the other ordered

    @property
    def rate(self) -> float | None:
        """Agreement on the pairs both annotators ordered; ties are reported apart."""
        strict = self.agree + self.disagree
        return self.agree / strict if strict else None


def pair_agreement(a: list[list[int]], b: list[list[int]], k: int) -> PairAgreement:
    """Compare two rankings of the same K completions pair by pair.

    >>> pair_agreement([[0], [1], [2]], [[0], [2], [1]], 3)
    PairAgreement(agree=2, disagree=1, both_tied=0, one_tied=0)
    """
    ra, rb = ranks(a, k), ranks(b, k)
    counts = [0, 0, 0, 0]
    for i in range(k):
        for j in range(i + 1, k):
            x = (ra[i] < ra[j]) - (ra[i] > ra[j])
            y = (rb[i] < rb[j]) - (rb[i] > rb[j])
            if x and y:
                counts[0 if x == y else 1] += 1
            else:
                counts[2 if x == y else 3] += 1
    return PairAgreement(*counts)


def consensus_ranks(rankings: list[tuple[list[list[int]], int]]) -> list[float]:
    """Mean rank of each completion over several rankings of one item (lower is better)."""
    k = rankings[0][1]
    return [statistics.fmean(ranks(g, k)[p] for g, _ in rankings) for p in range(k)]


def consensus_groups(rankings: list[list[list[int]]], k: int) -> list[list[int]]:
    """Several rankings of one item as one: each completion by its mean rank, equal means tied.

    >>> consensus_groups([[[0], [1], [2]], [[1], [0], [2]]], 3)
    [[0, 1], [2]]
    """
    mean = consensus_ranks([(g, k) for g in rankings])
    return [[p for p in range(k) if mean[p] == value] for value in sorted(set(mean))]


def agreement_with_consensus(mine: list[list[int]], others: list[list[list[int]]], k: int) -> PairAgreement:
    """My ranking against the mean-rank consensus of the other annotators of the same item."""
    return pair_agreement(mine, consensus_groups(others, k), k)


def bradley_terry(pairs: list[tuple[int, int]], k: int, iterations: int = 200, prior: float = 0.5) -> list[float]:
    """Bradley-Terry log-strengths (mean 0) from (winner, loser) pairs, by Hunter's MM algorithm.

    `prior` adds that many virtual wins and losses against every other completion, so a
    completion that always wins still gets a finite strength.
    """
    wins = np.zeros((1, k, k))
    for w, l in pairs:
        wins[0, w, l] += 1
    return _bradley_terry_mm(wins, iterations, prior)[0].tolist()


def _bradley_terry_mm(wins: np.ndarray, iterations: int = 200, prior: float = 0.5) -> np.ndarray:
    """Hunter's MM on S problems at once: wins [S, K, K] (i beat j) -> log-strengths [S, K], mean 0."""
    k = wins.shape[-1]
    wins = wins + prior * (1 - np.eye(k))  # [S, K, K]
    games = wins + wins.transpose(0, 2, 1)  # [S, K, K]
    won = wins.sum(2)  # [S, K]
    strength = np.ones(won.shape)  # [S, K]
    for _ in range(iterations):
        denominator = (games / (strength[:, :, None] + strength[:, None, :])).sum(2)  # [S, K]
        strength = won / denominator
        strength /= np.exp(np.log(strength).mean(1, keepdims=True))
    log_strength = np.log(strength)
    return log_strength - log_strength.mean(1, keepdims=True)


def bradley_terry_with_intervals(rankings: list[list[list[int]]], k: int, resamples: int = 200, seed: int = 0) -> list[dict]:
    """Per completion: BT log-strength and a 95% bootstrap interval (rankings resampled with replacement).

    All fits run at once, and resamples that drew the same rankings as often are fitted once.
    """
    n = len(rankings)
    draws = np.zeros((resamples + 1, n))  # [S+1, R] times each ranking is drawn; row 0 is the data itself
    draws[0] = 1
    rng = random.Random(seed)
    for s in range(1, resamples + 1):
        for _ in range(n):
            draws[s, rng.choice(range(n))] += 1  # consumes the generator as random.choice(rankings) does
    wins = np.zeros((n, k, k))  # [R, K, K] pairs each ranking implies
    for r, groups in enumerate(rankings):
        for p in ranking_to_pairs(groups):
            wins[r, p.chosen, p.rejected] += 1
    distinct, which = np.unique(draws, axis=0, return_inverse=True)
    fits = _bradley_terry_mm(np.einsum("sr,rij->sij", distinct, wins))[which.ravel()]  # [S+1, K]
    low, high = np.percentile(fits[1:], [2.5, 97.5], axis=0)
    return [{"position": p, "strength": float(fits[0, p]), "low": float(low[p]), "high": float(high[p])} for p in range(k)]


def span(low: float, high: float) -> str:
    """A 95% interval of shares as every screen and log writes it.

    >>> span(0.583, 0.871)
    '58–87%'
    """
    return f"{low:.0%}–{high:.0%}".replace("%–", "–", 1)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (ties counted as half a success).

    >>> [round(x, 3) for x in wilson_interval(4, 4)]
    [0.51, 1.0]
    >>> [round(x, 3) for x in wilson_interval(24, 32)]
    [0.579, 0.867]
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
