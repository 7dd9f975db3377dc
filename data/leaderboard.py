"""A rating per model from every ranking: Bradley-Terry with ties (Davidson), bootstrap intervals, win rates.

Chatbot Arena rates models from pairwise votes; here each ranking of K completions by several
models gives every pair of completions from two different models: a win, a loss or a tie. The
counts are kept in the store per item and pair of models (`model_pair_counts`), brought up to date
from the rankings added since the last look, so a screen reads a small table, never every ranking. Ties are modelled, not halved (Davidson 1970):

    P(i beats j) = pi_i / D,   P(tie) = nu * sqrt(pi_i * pi_j) / D,   D = pi_i + pi_j + nu * sqrt(pi_i * pi_j)

The intervals resample items (all rankings of an item together, since one ranking's pairs are
not independent) with Poisson(1) weights, the bootstrap Chatbot Arena reports, at cluster level.
"""

import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
from sqlite_utils import Database

from data.store import write_transaction

ELO_SCALE = 400 / math.log(10)  # ratings on the Elo / Arena scale: 400 points = 10:1 odds
BASE_RATING = 1000.0
RIDGE = 1e-3  # a whisper of prior so that a model that never lost gets a finite rating

REFRESH_BATCH = 5_000  # rankings read per query while catching up
# Rankings after the watermark that say something about models: not skipped, of items served to annotators.
_NEW_RANKINGS = """FROM rankings r JOIN items i ON i.id = r.item_id
                   WHERE r.id > ? AND r.skipped = 0 AND r.review != 'rejected' AND i.origin = 'sampled'"""
_MODELS_OF_ITEMS = """SELECT c.item_id, c.position, COALESCE(v.name, c.model_name, 'unknown')
                      FROM completions c LEFT JOIN model_versions v ON v.id = c.generator_version_id
                      WHERE c.item_id IN (SELECT value FROM json_each(?))"""


@dataclass
class PairCounts:
    """Per item and unordered pair of models (a < b by index): a's wins, b's wins and ties."""

    models: list[str]
    item: np.ndarray  # [R] cluster index of each row
    a: np.ndarray  # [R]
    b: np.ndarray  # [R]
    wins_a: np.ndarray  # [R]
    wins_b: np.ndarray  # [R]
    ties: np.ndarray  # [R]

    def totals(self, weights: np.ndarray | None = None) -> "PairCounts":
        """The rows summed per pair of models (weighted per item for a bootstrap replicate)."""
        n = len(self.models)
        key = self.a * n + self.b
        w = np.ones(len(key)) if weights is None else weights[self.item]
        keys = np.unique(key)
        summed = [np.bincount(np.searchsorted(keys, key), weights=w * column, minlength=len(keys))
                  for column in (self.wins_a, self.wins_b, self.ties)]
        return PairCounts(self.models, np.zeros(len(keys), int), keys // n, keys % n, *summed)


@dataclass
class ModelRating:
    model: str
    rating: float
    low: float  # 2.5th percentile of the bootstrap
    high: float  # 97.5th percentile
    pairs: int  # pairs against other models
    win_rate: float  # (wins + ties / 2) / pairs, against all other models


@dataclass
class Leaderboard:
    ratings: list[ModelRating]  # best first
    win_rates: dict[tuple[str, str], float]  # (model, opponent) -> (wins + ties / 2) / pairs, where they met
    pairs: dict[tuple[str, str], int]
    tie_strength: float  # nu: how readily annotators tie two equally good completions


def watermark(db: Database) -> tuple:
    """What the leaderboard depends on: it changes when a ranking is added."""
    return db.execute("SELECT (SELECT MAX(id) FROM rankings), (SELECT COUNT(*) FROM rankings)").fetchone()


def refresh(db: Database, on_progress=None) -> int:
    """Add the rankings stored since the last refresh to `model_pair_counts`; returns how many were read.

    Rankings are only ever added (a double submit stores nothing; repeats live apart), so the newest
    ranking id read is the watermark, as for the quality statistics. Each batch reads the watermark and
    its rankings inside its own write transaction, so two refreshes at once never count a ranking twice.
    """
    total = db.execute(f"SELECT COUNT(*) {_NEW_RANKINGS}",
                       [db.execute("SELECT last_ranking_id FROM leaderboard_state").fetchone()[0]]).fetchone()[0]
    done = 0
    while True:
        with write_transaction(db):
            last = db.execute("SELECT last_ranking_id FROM leaderboard_state").fetchone()[0]
            rows = db.execute(f"SELECT r.id, r.item_id, r.groups {_NEW_RANKINGS} ORDER BY r.id LIMIT ?", [last, REFRESH_BATCH]).fetchall()
            if not rows:
                return done
            db.conn.executemany(
                """INSERT INTO model_pair_counts (item_id, model_a, model_b, wins_a, wins_b, ties) VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (item_id, model_a, model_b) DO UPDATE SET wins_a = wins_a + excluded.wins_a,
                   wins_b = wins_b + excluded.wins_b, ties = ties + excluded.ties""",
                [(item, a, b, *n) for (item, a, b), n in _count_pairs(db, rows).items()])
            db.execute("UPDATE leaderboard_state SET last_ranking_id = ?", [rows[-1][0]])
        done += len(rows)
        if on_progress:
            on_progress(done, total)


def take_back(db: Database, ranking_id: int, item_id: int, groups: str) -> None:
    """Before a counted ranking is deleted (an undo), inside that transaction: subtract its pairs from the counts."""
    if ranking_id > db.execute("SELECT last_ranking_id FROM leaderboard_state").fetchone()[0]:
        return
    for (item, a, b), (wins_a, wins_b, ties) in _count_pairs(db, [(ranking_id, item_id, groups)]).items():
        db.execute("""UPDATE model_pair_counts SET wins_a = wins_a - ?, wins_b = wins_b - ?, ties = ties - ?
                      WHERE item_id = ? AND model_a = ? AND model_b = ?""", [wins_a, wins_b, ties, item, a, b])
    db.execute("DELETE FROM model_pair_counts WHERE item_id = ? AND wins_a = 0 AND wins_b = 0 AND ties = 0", [item_id])


def _count_pairs(db: Database, rankings: list[tuple]) -> dict[tuple, list[int]]:
    """Per (item, model a, model b) with a < b: [a's wins, b's wins, ties] in these rankings (id, item, JSON groups)."""
    models: dict[int, dict[int, str]] = {}
    for item, position, model in db.execute(_MODELS_OF_ITEMS, [json.dumps(sorted({r[1] for r in rankings}))]):
        models.setdefault(item, {})[position] = model
    counts: dict[tuple, list[int]] = {}
    for _, item, groups in rankings:
        rank = _readable_ranks(groups, models.get(item, {}))
        for i, j in itertools.combinations(sorted(rank), 2):
            a, b = models[item][i], models[item][j]
            if a == b:
                continue
            (a, rank_a), (b, rank_b) = sorted([(a, rank[i]), (b, rank[j])])
            cell = counts.setdefault((item, a, b), [0, 0, 0])
            cell[0 if rank_a < rank_b else 1 if rank_b < rank_a else 2] += 1
    return counts


def _readable_ranks(groups: str, positions: dict[int, str]) -> dict[int, int]:
    """Position -> rank group (0 = best); {} for a ranking whose JSON cannot be read (left out, as the Quality screens
    list such rankings), so one corrupted row never stops the leaderboard."""
    try:
        rank = {p: g for g, group in enumerate(json.loads(groups)) for p in group}
    except (TypeError, ValueError):
        return {}
    return rank if set(rank) <= set(positions) else {}


def pair_counts(db: Database) -> PairCounts:
    """The wins, losses and ties between every two models, per item, from all rankings (brought up to date first)."""
    refresh(db)
    rows = db.execute("SELECT item_id, model_a, model_b, wins_a, wins_b, ties FROM model_pair_counts").fetchall()
    models = sorted({m for row in rows for m in row[1:3]})
    index = {m: i for i, m in enumerate(models)}
    items = {item: i for i, item in enumerate(sorted({row[0] for row in rows}))}
    columns = list(zip(*rows)) if rows else [[]] * 6
    return PairCounts(models, np.array([items[i] for i in columns[0]], dtype=int),
                      np.array([index[m] for m in columns[1]], dtype=int), np.array([index[m] for m in columns[2]], dtype=int),
                      *(np.array(c, dtype=float) for c in columns[3:]))


def fit_davidson(counts: PairCounts, start: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, float]:
    """(log-strengths theta [M] centred on 0, tie strength nu) maximising the Davidson likelihood of the totals.

    `start`: a previous fit to begin from (a bootstrap replicate starts at the full data's fit).
    """
    totals = counts.totals()
    m = len(counts.models)
    a, b, w_a, w_b, t = totals.a, totals.b, totals.wins_a, totals.wins_b, totals.ties
    n = w_a + w_b + t

    def negative_log_likelihood(x):
        theta, eta = x[:m], x[m]
        tie_logit = eta + (theta[a] + theta[b]) / 2  # [P] log(nu * sqrt(pi_a pi_b))
        log_d = np.logaddexp(np.logaddexp(theta[a], theta[b]), tie_logit)  # [P] log D
        ll = w_a * theta[a] + w_b * theta[b] + t * tie_logit - n * log_d
        p_a, p_b, p_t = np.exp(theta[a] - log_d), np.exp(theta[b] - log_d), np.exp(tie_logit - log_d)  # [P]
        g_a = w_a + t / 2 - n * (p_a + p_t / 2)  # d ll / d theta_a, per pair
        g_b = w_b + t / 2 - n * (p_b + p_t / 2)
        grad = np.bincount(a, g_a, m) + np.bincount(b, g_b, m) - 2 * RIDGE * theta
        objective = -(ll.sum() - RIDGE * (theta ** 2).sum())
        return objective, -np.append(grad, (t - n * p_t).sum())

    from scipy.optimize import minimize  # here, not at the top: 0.6 s of every trainer's and CLI's start reach this module

    x0 = np.zeros(m + 1) if start is None else np.append(start[0], math.log(max(start[1], 1e-6)))
    x = minimize(negative_log_likelihood, x0, jac=True, method="L-BFGS-B").x
    theta = x[:m] - x[:m].mean()
    return theta, float(np.exp(x[m]))


def leaderboard(db: Database, bootstrap: int = 200, seed: int = 0) -> Leaderboard | None:
    """Ratings with 95% intervals for every model that met another in a ranking; None when no two models ever met."""
    counts = pair_counts(db)
    if len(counts.models) < 2:
        return None
    theta, nu = fit_davidson(counts)
    rng = np.random.default_rng(seed)
    n_items = int(counts.item.max()) + 1
    replicates = np.array([fit_davidson(PairCounts(counts.models, *_weighted(counts, rng.poisson(1.0, n_items))), (theta, nu))[0]
                           for _ in range(bootstrap)])  # [B, M]
    low, high = (np.percentile(replicates, q, axis=0) if bootstrap else theta for q in (2.5, 97.5))
    win_rates, pairs = _win_rates(counts)
    ratings = [ModelRating(model, *(BASE_RATING + ELO_SCALE * float(v) for v in (theta[i], low[i], high[i])),
                           *_against_all(model, win_rates, pairs))
               for i, model in enumerate(counts.models)]
    return Leaderboard(sorted(ratings, key=lambda r: -r.rating), win_rates, pairs, nu)


def _weighted(counts: PairCounts, weights: np.ndarray) -> tuple:
    """The per-pair totals of one bootstrap replicate, as PairCounts fields after `models`."""
    totals = counts.totals(weights)
    return totals.item, totals.a, totals.b, totals.wins_a, totals.wins_b, totals.ties


def _win_rates(counts: PairCounts) -> tuple[dict, dict]:
    totals = counts.totals()
    rates, pairs = {}, {}
    for a, b, w_a, w_b, t in zip(totals.a, totals.b, totals.wins_a, totals.wins_b, totals.ties):
        n = w_a + w_b + t
        names = counts.models[a], counts.models[b]
        rates[names] = (w_a + t / 2) / n
        rates[names[::-1]] = (w_b + t / 2) / n
        pairs[names] = pairs[names[::-1]] = int(n)
    return rates, pairs


def _against_all(model: str, win_rates: dict, pairs: dict) -> tuple[int, float]:
    """(pairs against any other model, the win rate over them): the per-opponent figures, weighted by their pairs."""
    met = {opponent: n for (first, opponent), n in pairs.items() if first == model}
    n = sum(met.values())
    return n, sum(win_rates[(model, opponent)] * k for opponent, k in met.items()) / n if n else float("nan")
