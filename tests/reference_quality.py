"""The quality figures as first written: every ranking read into Python on each call, Kendall's tau-b by scipy and
Krippendorff's alpha by the `krippendorff` package.

Kept as the reference that the incremental statistics in data/quality.py must equal.
"""

import math
import statistics
from collections import Counter, defaultdict

import krippendorff
import numpy as np
from scipy.stats import kendalltau
from sqlite_utils import Database

from data import agreement, gold
from data.rankings import LETTERS, tie_count
from data.store import from_json


def kendall_tau_b(a: list[list[int]], b: list[list[int]], k: int) -> float | None:
    """Kendall's tau-b between two rankings with ties (None when either ties everything)."""
    tau = kendalltau(agreement.ranks(a, k), agreement.ranks(b, k), variant="b").statistic
    return None if math.isnan(tau) else float(tau)


def krippendorff_alpha(rankings_by_item: dict[int, dict[str, tuple[list[list[int]], int]]]) -> float | None:
    """Krippendorff's alpha, ordinal metric, over every item with two or more rankings.

    rankings_by_item: {item: {annotator: (groups, k)}}. Units are (item, completion); values are ranks.
    """
    shared = {i: r for i, r in rankings_by_item.items() if len(r) >= 2}
    annotators = sorted({a for r in shared.values() for a in r})
    units = [(i, p) for i, r in shared.items() for p in range(next(iter(r.values()))[1])]
    if not annotators or not units:
        return None
    data = np.full((len(annotators), len(units)), np.nan)
    column = {unit: c for c, unit in enumerate(units)}
    for item, by_annotator in shared.items():
        for a, (groups, k) in by_annotator.items():
            for p, rank in enumerate(agreement.ranks(groups, k)):
                data[annotators.index(a), column[(item, p)]] = rank
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))


def _rankings(db: Database) -> list[dict]:
    rows = db.query(
        """SELECT r.item_id, a.name AS annotator, r.groups, r.display_order, r.seconds, r.flags, r.created_at,
                  (SELECT COUNT(*) FROM completions c WHERE c.item_id = r.item_id) AS k
           FROM rankings r JOIN annotators a ON a.id = r.annotator_id JOIN items i ON i.id = r.item_id
           WHERE r.skipped = 0 AND r.review != 'rejected' AND i.origin = 'sampled' ORDER BY r.id""")
    return [{**r, "groups": from_json(r["groups"]), "display_order": from_json(r["display_order"]),
             "flags": from_json(r["flags"])} for r in rows]


def _by_item(rankings: list[dict]) -> dict[int, dict[str, tuple[list[list[int]], int]]]:
    by_item: dict = defaultdict(dict)
    for r in rankings:
        by_item[r["item_id"]][r["annotator"]] = (r["groups"], r["k"])
    return by_item


def agreement_summary(db: Database) -> dict:
    """Between annotators on shared items: pairwise agreement (ties reported), mean Kendall tau-b, Krippendorff's alpha."""
    by_item = _by_item(_rankings(db))
    totals, taus = agreement.PairAgreement(0, 0, 0, 0), []
    for rankings in by_item.values():
        names = sorted(rankings)
        for x, a in enumerate(names):
            for b in names[x + 1:]:
                (ga, k), (gb, _) = rankings[a], rankings[b]
                pa = agreement.pair_agreement(ga, gb, k)
                totals = agreement.PairAgreement(totals.agree + pa.agree, totals.disagree + pa.disagree,
                                                 totals.both_tied + pa.both_tied, totals.one_tied + pa.one_tied)
                tau = kendall_tau_b(ga, gb, k)
                if tau is not None:
                    taus.append(tau)
    return {"shared_items": sum(len(r) >= 2 for r in by_item.values()), "pairwise_agreement": totals.rate,
            "pairs_both_ordered": totals.agree + totals.disagree, "pairs_both_tied": totals.both_tied,
            "pairs_one_tied": totals.one_tied, "kendall_tau_b": statistics.fmean(taus) if taus else None,
            "krippendorff_alpha": krippendorff_alpha(by_item)}


def annotator_table(db: Database) -> list[dict]:
    """Per annotator: count, speed, agreement with the others' consensus, tie rate, position and length bias, gold accuracy."""
    rankings = _rankings(db)
    by_item = _by_item(rankings)
    lengths = {(item, pos): n for item, pos, n in db.execute("SELECT item_id, position, LENGTH(text) FROM completions")}
    gold_accuracy = gold.accuracy_by_annotator(db)
    gold_counts = Counter(r["annotator"] for r in gold.gold_results(db))
    table = []
    for name in sorted({r["annotator"] for r in rankings}):
        mine = [r for r in rankings if r["annotator"] == name]
        consensus = agreement.PairAgreement(0, 0, 0, 0)
        for r in mine:
            others = [g for a, (g, _) in by_item[r["item_id"]].items() if a != name]
            if others:
                pa = agreement.agreement_with_consensus(r["groups"], others, r["k"])
                consensus = agreement.PairAgreement(consensus.agree + pa.agree, consensus.disagree + pa.disagree, 0, 0)
        all_pairs = sum(r["k"] * (r["k"] - 1) // 2 for r in mine)
        first_best = [r["display_order"][0] in r["groups"][0] for r in mine]
        expected_first = [len(r["groups"][0]) / r["k"] for r in mine]
        longer_wins, length_pairs = 0, 0
        for r in mine:
            rank = agreement.ranks(r["groups"], r["k"])
            for i in range(r["k"]):
                for j in range(r["k"]):
                    li, lj = lengths[(r["item_id"], i)], lengths[(r["item_id"], j)]
                    if rank[i] < rank[j] and li != lj:
                        length_pairs += 1
                        longer_wins += li > lj
        seconds = [r["seconds"] for r in mine if r["seconds"] is not None]
        table.append({
            "annotator": name, "rankings": len(mine),
            "median_seconds": statistics.median(seconds) if seconds else None,
            "agreement_with_others": consensus.rate, "agreement_pairs": consensus.agree + consensus.disagree,
            "tie_rate": sum(tie_count(r["groups"]) for r in mine) / all_pairs if all_pairs else None,
            "first_shown_ranked_best": statistics.fmean(first_best) if mine else None,
            "first_shown_expected": statistics.fmean(expected_first) if mine else None,
            "longer_wins": longer_wins / length_pairs if length_pairs else None,
            "gold_accuracy": gold_accuracy.get(name),
            "gold_rankings": gold_counts[name],
        })
    return table


def rankings_per_day(db: Database) -> list[dict]:
    return list(db.query("""SELECT substr(created_at, 1, 10) AS day, COUNT(*) AS rankings FROM rankings
                            WHERE skipped = 0 GROUP BY day ORDER BY day"""))


def data_health(db: Database) -> dict:
    """Tie rate, flagged items and coverage (items with all the rankings their prompt set wants, in active sets)."""
    rankings = _rankings(db)
    pairs = sum(r["k"] * (r["k"] - 1) // 2 for r in rankings)
    covered, total = db.execute(
        """SELECT SUM(i.n_rankings >= s.rankings_wanted), COUNT(*) FROM items i JOIN prompts p ON p.id = i.prompt_id
           JOIN prompt_sets s ON s.name = p.prompt_set WHERE i.origin = 'sampled' AND s.status = 'active'""").fetchone()
    flagged = db.execute("SELECT COUNT(DISTINCT item_id) FROM rankings WHERE flags != '[]'").fetchone()[0]
    return {"tie_rate": sum(tie_count(r["groups"]) for r in rankings) / pairs if pairs else None,
            "flagged_items": flagged, "covered_items": covered or 0, "items": total,
            "coverage": (covered or 0) / total if total else None}


def item_consensus(db: Database, item_id: int) -> list[dict]:
    """The consensus order of one item from all its rankings: Bradley-Terry strengths with 95% intervals."""
    rankings = [r for r in _rankings(db) if r["item_id"] == item_id]
    if not rankings:
        return []
    k = rankings[0]["k"]
    strengths = agreement.bradley_terry_with_intervals([r["groups"] for r in rankings], k)
    mean_rank = agreement.consensus_ranks([(r["groups"], k) for r in rankings])
    return sorted(({"completion": LETTERS[s["position"]], "mean_rank": mean_rank[s["position"]], **s} for s in strengths),
                  key=lambda row: -row["strength"])
