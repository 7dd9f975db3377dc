"""Quality figures for the admin screens: agreement between annotators, per-annotator biases, data health.

The figures live in the store and are brought up to date incrementally: `refresh` reads only the
rankings stored since it last ran (the newest ranking id it saw is the watermark) and recomputes
the items they belong to. A screen then reads small aggregate tables, so it costs the same at 500
rankings and at 500,000. The definitions are those of `tests/reference_quality.py` (every ranking
read into Python), which the tests prove equal.
"""

import json
import math
from collections import Counter

import numpy as np
from sqlite_utils import Database

from data import agreement
from data.rankings import LETTERS, MAX_K, passes_gold, tie_count, validate_order, validate_ranking
from data.prompt_sets import WANTED
from data.store import from_json, write_transaction

REFRESH_BATCH = 500  # rankings per write transaction, so annotators never wait long behind a catch-up
ANNOTATOR_SUMS = ("rankings", "timed", "pairs", "ties", "agree", "disagree", "first_best", "expected_first",
                  "longer_wins", "length_pairs", "gold_rankings", "gold_passed")
RANKING_COLUMNS = ("ranking_id", "item_id", "annotator_id", "pairs", "ties", "agree", "disagree", "first_best",
                   "expected_first", "longer_wins", "length_pairs", "gold_passed", "seconds")


def refresh(db: Database, on_progress=None) -> int:
    """Bring the statistics up to date; returns how many new rankings were read."""
    total = db.execute("SELECT COUNT(*) FROM rankings WHERE id > (SELECT last_ranking_id FROM stats_state)").fetchone()[0]
    read = 0
    while True:
        with write_transaction(db):
            last, state = db.execute("SELECT last_ranking_id, coincidences FROM stats_state").fetchone()
            new = db.execute(
                """SELECT r.id, r.item_id, r.skipped, substr(r.created_at, 1, 10), i.origin
                   FROM rankings r JOIN items i ON i.id = r.item_id WHERE r.id > ? ORDER BY r.id LIMIT ?""",
                [last, REFRESH_BATCH]).fetchall()
            dirty = {row[0] for row in db.execute("SELECT item_id FROM stats_dirty")}
            if not new and not dirty:
                return read
            _count_days(db, Counter(day for _, _, skipped, day, _ in new if not skipped))
            dirty |= {item for _, item, skipped, _, origin in new if not skipped and origin == "sampled"}
            coincidences = {int(m): np.array(c) for m, c in json.loads(state).items()}
            if dirty:
                _refresh_items(db, sorted(dirty), coincidences)
            db.execute("UPDATE stats_state SET last_ranking_id = ?, coincidences = ?",
                       [new[-1][0] if new else last, json.dumps({m: c.tolist() for m, c in coincidences.items() if c.any()})])
            db.execute("DELETE FROM stats_dirty")
        read += len(new)
        if on_progress:
            on_progress(read, total)
        if len(new) < REFRESH_BATCH:
            return read


def take_back(db: Database, ranking_id: int, item_id: int, day: str | None, sampled: bool) -> None:
    """Before a counted ranking is deleted (an undo, `day`: its day's count goes down too) or rejected (day None),
    inside that transaction: take its item's contributions away while the ranking still counts, and have the next
    refresh count the item again without it. A ranking the statistics have not read yet needs nothing."""
    last, state = db.execute("SELECT last_ranking_id, coincidences FROM stats_state").fetchone()
    if ranking_id > last:
        return
    if day is not None:
        _count_days(db, Counter({day: -1}))
    if not sampled:  # only sampled items have statistics
        return
    coincidences, sums = {int(m): np.array(c) for m, c in json.loads(state).items()}, {}
    _forget_items(db, [item_id], "?", coincidences, sums)
    _add_to_annotators(db, sums)
    db.execute("UPDATE stats_state SET coincidences = ?", [json.dumps({m: c.tolist() for m, c in coincidences.items() if c.any()})])
    mark_dirty(db, item_id)


def forget_day(db: Database, ranking_id: int, day: str) -> None:
    """Before a ranking already taken out of the statistics (rejected) is deleted: its day's count goes down, if the
    statistics have counted it."""
    if ranking_id <= db.execute("SELECT last_ranking_id FROM stats_state").fetchone()[0]:
        _count_days(db, Counter({day: -1}))


def mark_dirty(db: Database, item_id: int) -> None:
    """Have the next refresh recompute this item (its gold answer changed)."""
    db.execute("INSERT OR IGNORE INTO stats_dirty (item_id) VALUES (?)", [item_id])


def _count_days(db: Database, per_day: Counter) -> None:
    db.conn.executemany("""INSERT INTO daily_rankings (day, rankings) VALUES (?, ?)
                           ON CONFLICT (day) DO UPDATE SET rankings = rankings + excluded.rankings""", per_day.items())


def _refresh_items(db: Database, item_ids: list[int], coincidences: dict[int, np.ndarray]) -> None:
    """Replace these items' contributions to every statistic by their current ones (a few queries for the lot)."""
    marks = ", ".join("?" * len(item_ids))
    sums: dict[int, Counter] = {}  # per annotator: what to add to their running sums
    _forget_items(db, item_ids, marks, coincidences, sums)
    rankings: dict[int, list] = {}
    for row in db.execute(f"""SELECT r.item_id, r.id, r.annotator_id, a.name, r.groups, r.display_order, r.seconds FROM rankings r
                              JOIN annotators a ON a.id = r.annotator_id WHERE r.item_id IN ({marks}) AND r.skipped = 0
                              AND r.review != 'rejected'
                              ORDER BY r.item_id, r.id""", item_ids):
        rankings.setdefault(row[0], []).append(row[1:])
    lengths: dict[int, list[int]] = {}
    for item_id, length in db.execute(f"SELECT item_id, LENGTH(text) FROM completions WHERE item_id IN ({marks}) ORDER BY item_id, position",
                                      item_ids):
        lengths.setdefault(item_id, []).append(length)
    gold = {item_id: from_json(expected) for item_id, expected in db.execute(f"SELECT item_id, expected FROM gold WHERE item_id IN ({marks})",
                                                                             item_ids)}
    rows, unreadable, agreements = [], [], []
    for item_id, item_rankings in rankings.items():
        readable = [r for r in item_rankings if _readable(r, len(lengths[item_id]))]
        unreadable += [(r[0], item_id) for r in item_rankings if r not in readable]
        groups = {r[0]: from_json(r[3]) for r in readable}
        rows += [_ranking_row(item_id, r, groups, lengths[item_id], gold.get(item_id)) for r in readable]
        if len(readable) >= 2:
            agreements.append(_item_agreement(item_id, [(name, groups[rid]) for rid, _, name, *_ in readable], len(lengths[item_id]),
                                              coincidences))
    db.conn.executemany(f"INSERT INTO ranking_stats ({', '.join(RANKING_COLUMNS)}) VALUES ({', '.join(':' + c for c in RANKING_COLUMNS)})",
                        rows)
    db.conn.executemany("INSERT INTO stats_unreadable (ranking_id, item_id) VALUES (?, ?)", unreadable)
    db.conn.executemany("INSERT INTO item_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", agreements)
    _count_for_annotators(sums, rows, +1)
    _add_to_annotators(db, sums)
    _count_for_guidelines(db, item_ids, marks, +1)


def _forget_items(db: Database, item_ids: list[int], marks: str, coincidences: dict[int, np.ndarray], sums: dict) -> None:
    _count_for_annotators(sums, list(db.query(f"SELECT * FROM ranking_stats WHERE item_id IN ({marks})", item_ids)), -1)
    _count_for_guidelines(db, item_ids, marks, -1)
    for m, old in db.execute(f"SELECT annotators, coincidences FROM item_stats WHERE item_id IN ({marks})", item_ids).fetchall():
        coincidences[m] = coincidences[m] - np.array(json.loads(old))
    for table in ("ranking_stats", "stats_unreadable", "item_stats"):
        db.execute(f"DELETE FROM {table} WHERE item_id IN ({marks})", item_ids)


def _readable(ranking: tuple, k: int) -> bool:
    """Whether a stored ranking's groups and display order can be read (rows from older versions may not)."""
    try:
        validate_ranking(json.loads(ranking[3]), k)
        validate_order(json.loads(ranking[4]), k)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


def unreadable_rankings(db: Database) -> list[int]:
    """Ids of stored rankings the statistics leave out because they cannot be read."""
    return [row[0] for row in db.execute("SELECT ranking_id FROM stats_unreadable ORDER BY ranking_id")]


def _ranking_row(item_id: int, ranking: tuple, groups: dict, lengths: list[int], expected) -> dict:
    """One ranking's contribution: agreement with the others' consensus, ties, position and length bias, gold."""
    ranking_id, annotator_id, _, _, display_order, seconds = ranking
    k, mine = len(lengths), groups[ranking_id]
    others = [g for rid, g in groups.items() if rid != ranking_id]
    consensus = agreement.agreement_with_consensus(mine, others, k) if others else agreement.PairAgreement(0, 0, 0, 0)
    rank = agreement.ranks(mine, k)
    longer_wins = length_pairs = 0
    for i in range(k):
        for j in range(k):
            if rank[i] < rank[j] and lengths[i] != lengths[j]:
                length_pairs += 1
                longer_wins += lengths[i] > lengths[j]
    return {"ranking_id": ranking_id, "item_id": item_id, "annotator_id": annotator_id, "pairs": k * (k - 1) // 2,
            "ties": tie_count(mine), "agree": consensus.agree, "disagree": consensus.disagree,
            "first_best": int(from_json(display_order)[0] in mine[0]), "expected_first": len(mine[0]) / k,
            "longer_wins": longer_wins, "length_pairs": length_pairs,
            "gold_passed": None if expected is None else int(passes_gold(expected, mine)), "seconds": seconds}


def _count_for_annotators(sums: dict[int, Counter], rows: list[dict], sign: int) -> None:
    """Add (sign +1) or take away (-1) these rankings' contributions to their annotators' sums."""
    for row in rows:
        values = {**{c: row[c] for c in ANNOTATOR_SUMS if c in row}, "rankings": 1, "timed": int(row["seconds"] is not None),
                  "gold_rankings": int(row["gold_passed"] is not None), "gold_passed": row["gold_passed"] or 0}
        sums.setdefault(row["annotator_id"], Counter()).update({c: sign * v for c, v in values.items()})


def _add_to_annotators(db: Database, sums: dict[int, Counter]) -> None:
    db.conn.executemany("INSERT OR IGNORE INTO annotator_stats (annotator_id) VALUES (?)", [(a,) for a in sums])
    db.conn.executemany(f"UPDATE annotator_stats SET {', '.join(f'{c} = {c} + :{c}' for c in ANNOTATOR_SUMS)} WHERE annotator_id = :id",
                        [{c: values[c] for c in ANNOTATOR_SUMS} | {"id": a} for a, values in sums.items()])


def _count_for_guidelines(db: Database, item_ids: list[int], marks: str, sign: int) -> None:
    """Add (sign +1) or take away (-1) these items' ranking_stats rows to the sums per prompt set and guideline version."""
    db.execute(f"""INSERT INTO guideline_stats (prompt_set, version, rankings, agree, disagree)
                   SELECT p.prompt_set, COALESCE(r.guideline_version, 0), {sign} * COUNT(*), {sign} * TOTAL(rs.agree),
                          {sign} * TOTAL(rs.disagree)
                   FROM ranking_stats rs JOIN rankings r ON r.id = rs.ranking_id JOIN items i ON i.id = rs.item_id
                   JOIN prompts p ON p.id = i.prompt_id WHERE rs.item_id IN ({marks}) GROUP BY 1, 2
                   ON CONFLICT (prompt_set, version) DO UPDATE SET rankings = rankings + excluded.rankings,
                       agree = agree + excluded.agree, disagree = disagree + excluded.disagree""", item_ids)


def _item_agreement(item_id: int, rankings: list[tuple[str, list]], k: int, coincidences: dict[int, np.ndarray]) -> tuple:
    """Pairwise agreement and Kendall tau-b between the item's annotators, and its share of Krippendorff's coincidences."""
    rankings = sorted(rankings)
    totals, taus = [0, 0, 0, 0], []
    for x, (_, a) in enumerate(rankings):
        for _, b in rankings[x + 1:]:
            pa = agreement.pair_agreement(a, b, k)
            totals = [t + v for t, v in zip(totals, (pa.agree, pa.disagree, pa.both_tied, pa.one_tied))]
            tau = tau_b(pa, tie_count(a), tie_count(b), k)
            if tau is not None:
                taus.append(tau)
    pair_counts = item_coincidences([g for _, g in rankings], k)  # [MAX_K, MAX_K]
    m = len(rankings)
    coincidences[m] = coincidences.get(m, np.zeros((MAX_K, MAX_K), dtype=np.int64)) + pair_counts
    return (item_id, m, *totals, math.fsum(taus), len(taus), json.dumps(pair_counts.tolist()))


def tau_b(pa: agreement.PairAgreement, ties_a: int, ties_b: int, k: int) -> float | None:
    """Kendall's tau-b from pair counts, as scipy computes it (None when either ranking ties everything).

    >>> round(tau_b(agreement.pair_agreement([[0], [1], [2]], [[0], [2], [1]], 3), 0, 0, 3), 12)
    0.333333333333
    """
    n0 = k * (k - 1) // 2
    if n0 == ties_a or n0 == ties_b:
        return None
    return (pa.agree - pa.disagree) / math.sqrt(n0 - ties_a) / math.sqrt(n0 - ties_b)


def item_coincidences(rankings: list[list[list[int]]], k: int) -> np.ndarray:
    """Krippendorff's unnormalised coincidences of one item: for each completion (a unit), the
    ordered pairs of rank values given by two different annotators, summed over the completions."""
    counts = np.zeros((k, MAX_K), dtype=np.int64)  # [units, rank values]
    for groups in rankings:
        for position, rank in enumerate(agreement.ranks(groups, k)):
            counts[position, rank - 1] += 1
    return (counts[:, :, None] * counts[:, None, :]).sum(0) - np.diag(counts.sum(0))  # [MAX_K, MAX_K]


def krippendorff_alpha(coincidences: dict[int, np.ndarray]) -> float | None:
    """Ordinal alpha from coincidences grouped by how many annotators ranked the unit (the `krippendorff` package's formula)."""
    o = sum((c / (m - 1) for m, c in coincidences.items()), np.zeros((MAX_K, MAX_K)))  # [V, V]
    present = o.sum(0) > 0
    if present.sum() < 2:
        return None
    o = o[present][:, present]
    n_v = o.sum(0)
    e = (np.outer(n_v, n_v) - np.diagflat(n_v)) / (n_v.sum() - 1)
    cumulative = np.concatenate([[0.0], np.cumsum(n_v)])
    i1, i2 = np.minimum.outer(np.arange(len(n_v)), np.arange(len(n_v))), np.maximum.outer(np.arange(len(n_v)), np.arange(len(n_v)))
    d = (cumulative[i2 + 1] - cumulative[i1] - (n_v[i1] + n_v[i2]) / 2) ** 2
    return float(1 - (o * d).sum() / (e * d).sum())


def agreement_summary(db: Database) -> dict:
    """Between annotators on shared items: pairwise agreement (ties reported), mean Kendall tau-b, Krippendorff's alpha."""
    refresh(db)
    shared, agree, disagree, both_tied, one_tied, tau_sum, tau_n = db.execute(
        """SELECT COUNT(*), TOTAL(agree), TOTAL(disagree), TOTAL(both_tied), TOTAL(one_tied), TOTAL(tau_sum), TOTAL(tau_n)
           FROM item_stats""").fetchone()
    state = db.execute("SELECT coincidences FROM stats_state").fetchone()[0]
    coincidences = {int(m): np.array(c) for m, c in json.loads(state).items()}
    strict = agree + disagree
    return {"shared_items": shared, "pairwise_agreement": agree / strict if strict else None,
            "pairs_both_ordered": int(strict), "pairs_both_tied": int(both_tied), "pairs_one_tied": int(one_tied),
            "kendall_tau_b": tau_sum / tau_n if tau_n else None,
            "krippendorff_alpha": krippendorff_alpha(coincidences) if coincidences else None}


def annotator_table(db: Database) -> list[dict]:
    """Per annotator: count, speed, agreement with the others' consensus (and the pairs it rests on), tie rate,
    position and length bias, gold accuracy (and the gold rankings it rests on)."""
    refresh(db)
    rows = db.query("""SELECT s.*, a.name FROM annotator_stats s JOIN annotators a ON a.id = s.annotator_id
                       WHERE s.rankings > 0 ORDER BY a.name""")
    ratio = lambda part, whole: part / whole if whole else None  # noqa: E731
    return [{
        "annotator": r["name"], "rankings": r["rankings"], "median_seconds": _median_seconds(db, r["annotator_id"], r["timed"]),
        "agreement_with_others": ratio(r["agree"], r["agree"] + r["disagree"]), "agreement_pairs": r["agree"] + r["disagree"],
        "tie_rate": ratio(r["ties"], r["pairs"]),
        "first_shown_ranked_best": r["first_best"] / r["rankings"], "first_shown_expected": r["expected_first"] / r["rankings"],
        "longer_wins": ratio(r["longer_wins"], r["length_pairs"]), "gold_accuracy": ratio(r["gold_passed"], r["gold_rankings"]),
        "gold_rankings": r["gold_rankings"],
    } for r in rows]


def self_agreement(db: Database) -> list[dict]:
    """Per annotator, from their self-consistency repeats: how many were ranked again, the share of pairs ordered the
    same way both times (of the pairs ordered strictly both times) and the mean Kendall tau-b with their first ranking."""
    rows = db.query("""SELECT a.name, COUNT(*) AS repeats, TOTAL(x.agree) AS agree, TOTAL(x.disagree) AS disagree,
                              AVG(x.tau_b) AS tau_b
                       FROM repeat_rankings x JOIN annotators a ON a.id = x.annotator_id
                       WHERE x.skipped = 0 GROUP BY x.annotator_id ORDER BY a.name""")
    return [{"annotator": r["name"], "repeats": r["repeats"],
             "self_agreement": r["agree"] / (r["agree"] + r["disagree"]) if r["agree"] + r["disagree"] else None,
             "self_tau_b": r["tau_b"]} for r in rows]


def agreement_by_guideline(db: Database) -> list[dict]:
    """Per prompt set and guideline version (None: ranked before the set had guidelines): rankings, and their
    agreement with the consensus of the item's other annotators."""
    refresh(db)
    rows = db.query("SELECT * FROM guideline_stats WHERE rankings > 0 ORDER BY prompt_set, version")
    return [{"prompt_set": r["prompt_set"], "guideline_version": r["version"] or None, "rankings": r["rankings"],
             "agreement_with_others": r["agree"] / (r["agree"] + r["disagree"]) if r["agree"] + r["disagree"] else None}
            for r in rows]


def _median_seconds(db: Database, annotator_id: int, timed: int) -> float | None:
    """The median of an annotator's seconds per ranking, read from the index: at most two rows."""
    if not timed:
        return None
    middle = db.execute("""SELECT seconds FROM ranking_stats WHERE annotator_id = ? AND seconds IS NOT NULL
                           ORDER BY seconds LIMIT ? OFFSET ?""", [annotator_id, 2 - timed % 2, (timed - 1) // 2]).fetchall()
    return sum(row[0] for row in middle) / len(middle)


def rankings_per_day(db: Database) -> list[dict]:
    refresh(db)
    return list(db.query("SELECT day, rankings FROM daily_rankings WHERE rankings > 0 ORDER BY day"))


def data_health(db: Database) -> dict:
    """Tie rate, flagged items and coverage (items with all the rankings their prompt set wants, among the items of
    the sets being served: a paused demo set's or an archived set's items are not work left)."""
    refresh(db)
    ties, pairs = db.execute("SELECT TOTAL(ties), TOTAL(pairs) FROM annotator_stats").fetchone()
    covered, total = db.execute(
        f"""SELECT SUM(i.n_rankings >= {WANTED}), COUNT(*) FROM items i JOIN prompts p ON p.id = i.prompt_id
           JOIN prompt_sets s ON s.name = p.prompt_set WHERE i.origin = 'sampled' AND s.status = 'active'""").fetchone()
    flagged = db.execute("SELECT COUNT(DISTINCT item_id) FROM rankings WHERE flags != '[]'").fetchone()[0]
    return {"tie_rate": ties / pairs if pairs else None, "flagged_items": flagged, "covered_items": covered or 0,
            "items": total, "coverage": (covered or 0) / total if total else None}


def item_consensus(db: Database, item_id: int) -> list[dict]:
    """The consensus order of one item from its rankings: Bradley-Terry strengths with 95% intervals."""
    rankings = [from_json(row[0]) for row in db.execute(
        """SELECT r.groups FROM rankings r JOIN items i ON i.id = r.item_id
           WHERE r.item_id = ? AND r.skipped = 0 AND r.review != 'rejected' AND i.origin = 'sampled' ORDER BY r.id""", [item_id])]
    if not rankings:
        return []
    k = db.execute("SELECT COUNT(*) FROM completions WHERE item_id = ?", [item_id]).fetchone()[0]
    strengths = agreement.bradley_terry_with_intervals(rankings, k)
    mean_rank = agreement.consensus_ranks([(g, k) for g in rankings])
    return sorted(({"completion": LETTERS[s["position"]], "mean_rank": mean_rank[s["position"]], **s} for s in strengths),
                  key=lambda row: -row["strength"])
