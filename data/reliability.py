"""How much each annotator's rankings count in training: their reliability as the store measures it, shrunk towards
the team's with few observations.

Three measurements, each a share of successes the store keeps as it grows (data/quality.py, the repeats' table):
  agreement   pairs ordered as the consensus of the item's other annotators   annotator_stats.agree / + disagree
  gold        gold items passed                                                annotator_stats.gold_passed / gold_rankings
  self        pairs ordered the same way when ranked again                     repeat_rankings.agree / + disagree
Each share p is estimated with a Beta prior centred on the whole team's share and worth about ten rankings (PRIOR:
50 pairs, a ranking of 4 giving 6; 10 gold items), so an annotator with few observations stays near the team. It becomes the signal their labels carry relative to the
team's: (2p - 1) / (2p_team - 1), the expected agreement of a label with the truth beyond chance when an annotator
orders a pair right with probability p. A random annotator (p = 1/2) carries none, one who contradicts the others
(p < 1/2) none either (weighting cannot trust them to be reliably wrong). The weight is the product of the three
factors, clipped to [0, MAX_WEIGHT]; a measurement nobody has (no gold items, no repeats) gives 1.

The reward model (rm/train.py) and DPO (policy/dpo.py) take these weights with `--weighting reliability`: each
ranking's loss counts in proportion to its annotator's weight. Pure SQL over the kept sums: no loop over rankings.
"""

from sqlite_utils import Database

from data import quality

PRIOR = {"agreement": 50, "gold": 10, "self": 50}  # observations the team's share is worth in each estimate
MAX_WEIGHT = 2.0


def shrunk_share(successes: float, trials: float, team_share: float, prior: float) -> float:
    """The annotator's share with a Beta prior of `prior` observations at the team's share.

    >>> shrunk_share(0, 0, 0.8, 20), shrunk_share(10, 10, 0.8, 20), round(shrunk_share(100, 200, 0.8, 20), 3)
    (0.8, 0.8666666666666667, 0.527)
    """
    return (successes + prior * team_share) / (trials + prior)


def signal_factor(share: float, team_share: float) -> float:
    """(2p - 1) / (2p_team - 1), at least 0; 1 when the team itself carries no signal to compare with.

    >>> signal_factor(0.8, 0.8), signal_factor(0.5, 0.8), signal_factor(0.3, 0.8), round(signal_factor(0.9, 0.7), 3)
    (1.0, 0.0, 0.0, 2.0)
    """
    if team_share <= 0.5:
        return 1.0
    return max(0.0, (2 * share - 1) / (2 * team_share - 1))


def reliability(db: Database) -> list[dict]:
    """Per annotator who has ranked: the three measurements (raw shares and counts) and the training weight."""
    quality.refresh(db)
    rows = db.query("""
        SELECT a.name, s.rankings, s.agree, s.agree + s.disagree AS compared, s.gold_passed, s.gold_rankings,
               COALESCE(r.agree, 0) AS self_agree, COALESCE(r.agree + r.disagree, 0) AS self_compared
        FROM annotator_stats s JOIN annotators a ON a.id = s.annotator_id
        LEFT JOIN (SELECT annotator_id, TOTAL(agree) AS agree, TOTAL(disagree) AS disagree FROM repeat_rankings
                   WHERE skipped = 0 GROUP BY annotator_id) r ON r.annotator_id = s.annotator_id
        WHERE s.rankings > 0 ORDER BY a.name""")
    rows = list(rows)
    measures = {"agreement": ("agree", "compared"), "gold": ("gold_passed", "gold_rankings"),
                "self": ("self_agree", "self_compared")}
    team = {name: _team_share(rows, hits, trials) for name, (hits, trials) in measures.items()}
    table = []
    for row in rows:
        entry, weight = {"annotator": row["name"], "rankings": row["rankings"]}, 1.0
        for name, (hits, trials) in measures.items():
            entry[name] = row[hits] / row[trials] if row[trials] else None
            entry[f"{name}_n"] = int(row[trials])
            if team[name] is not None:
                weight *= signal_factor(shrunk_share(row[hits], row[trials], team[name], PRIOR[name]), team[name])
        entry["weight"] = min(weight, MAX_WEIGHT)
        table.append(entry)
    return table


def training_weights(db: Database) -> dict[str, float]:
    """Annotator name -> the weight of their rankings in training (1 for anyone the store has no figures for)."""
    return {row["annotator"]: row["weight"] for row in reliability(db)}


def _team_share(rows: list[dict], hits: str, trials: str) -> float | None:
    total = sum(row[trials] for row in rows)
    return sum(row[hits] for row in rows) / total if total else None
