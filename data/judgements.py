"""An AI judge's rankings, kept apart from people's, and how far they agree with people.

A judge (a remote OpenAI-compatible model or a local generator version: policy/judge.py) ranks an item's completions
several times, each a vote: an independent critique ending in a ranking, its letters in an order of its own. The
votes are stored here (`judgements`), never as rankings: they count in no training set, no agreement among people,
no queue and no export. What they are worth is measured against people on the items both ranked:
    the judge's ranking from its first k votes = the mean rank of each completion over those votes (ties when equal:
    data/agreement.py:consensus_groups, as people's consensus)
    agreement = share of the pairs both it and the consensus of the item's people ordered, on which they agree
the same figure as a person's "agreement with others" (data/agreement.py:agreement_with_consensus), for k = 1, 2,
4, 8: whether more votes (inference-time scaling) make it agree more.
"""

import math
import random

from sqlite_utils import Database

from data import agreement
from data.rankings import validate_ranking
from data.review import EXCLUDED_FROM_TRAINING
from data.store import from_json, now, to_json, write_transaction

VOTE_COUNTS = (1, 2, 4, 8)


def items_to_judge(db: Database, prompt_set: str, judge: str, share: float, seed: int = 0) -> list[int]:
    """A fixed share of the set's sampled items not judged by this judge yet, those people ranked first (so the
    judge can be measured against them), each group in a seeded random order."""
    rows = db.execute("""SELECT i.id, EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = i.id AND r.skipped = 0)
                         FROM items i JOIN prompts p ON p.id = i.prompt_id
                         WHERE p.prompt_set = ? AND i.origin = 'sampled'
                           AND NOT EXISTS (SELECT 1 FROM judgements j WHERE j.item_id = i.id AND j.judge = ?)
                         ORDER BY i.id""", [prompt_set, judge]).fetchall()
    total = db.execute("""SELECT COUNT(*) FROM items i JOIN prompts p ON p.id = i.prompt_id
                          WHERE p.prompt_set = ? AND i.origin = 'sampled'""", [prompt_set]).fetchone()[0]
    wanted = math.ceil(share * total - 1e-9) - (total - len(rows))  # at least one; the share counts those judged already
    rng = random.Random(seed)
    ranked, unranked = [i for i, has in rows if has], [i for i, has in rows if not has]
    rng.shuffle(ranked)
    rng.shuffle(unranked)
    return (ranked + unranked)[:max(0, wanted)]


def store_votes(db: Database, judge: str, item_id: int, votes: list[tuple[list[list[int]] | None, str]], k: int,
                job_id: int | None = None) -> None:
    """An item's votes: (groups over stored positions, or None when unreadable; the judge's answer)."""
    with write_transaction(db):
        for n, (groups, answer) in enumerate(votes):
            checked = validate_ranking(groups, k) if groups is not None else None
            db.execute("""INSERT OR REPLACE INTO judgements (item_id, judge, vote, groups, answer, job_id, created_at)
                          VALUES (?, ?, ?, ?, ?, ?, ?)""",
                       [item_id, judge, n, None if checked is None else to_json(checked), answer[:4000], job_id, now()])


def agreement_with_people(db: Database, judge: str, counts: tuple[int, ...] = VOTE_COUNTS) -> list[dict]:
    """For each k in `counts`: the judge's ranking from its first k readable votes against the consensus of each
    item's people (rankings kept for training: not skipped, rejected or flagged all bad), pooled over the items both
    ranked. One pass over the judged items' rows, by the job that stored them (not on every page view)."""
    people: dict[int, list[list[list[int]]]] = {}
    for item_id, groups in db.execute(f"""SELECT r.item_id, r.groups FROM rankings r
                                          WHERE r.skipped = 0 AND NOT {EXCLUDED_FROM_TRAINING}
                                          AND r.item_id IN (SELECT item_id FROM judgements WHERE judge = ?)""", [judge]):
        people.setdefault(item_id, []).append(from_json(groups))
    votes: dict[int, list[list[list[int]]]] = {}
    k_of = dict(db.execute("""SELECT i.id, COUNT(c.id) FROM items i JOIN completions c ON c.item_id = i.id
                              WHERE i.id IN (SELECT item_id FROM judgements WHERE judge = ?) GROUP BY i.id""", [judge]))
    for item_id, groups in db.execute("""SELECT item_id, groups FROM judgements WHERE judge = ? AND groups IS NOT NULL
                                         ORDER BY item_id, vote""", [judge]):
        votes.setdefault(item_id, []).append(from_json(groups))
    rows = []
    for k_votes in counts:
        agree = disagree = items = 0
        for item_id, humans in people.items():
            mine = votes.get(item_id, [])[:k_votes]
            if not mine:
                continue
            pairs = agreement.pair_agreement(agreement.consensus_groups(mine, k_of[item_id]),
                                             agreement.consensus_groups(humans, k_of[item_id]), k_of[item_id])
            agree, disagree, items = agree + pairs.agree, disagree + pairs.disagree, items + 1
        strict = agree + disagree
        low, high = agreement.wilson_interval(agree, strict) if strict else (None, None)
        rows.append({"votes": k_votes, "items": items, "pairs": strict, "agreement": agree / strict if strict else None,
                     "low": low, "high": high})
    return rows


def judge_summary(db: Database, judge: str) -> dict:
    """Items judged, votes stored, and the share of votes whose answer held a readable ranking."""
    items, votes, readable = db.execute("""SELECT COUNT(DISTINCT item_id), COUNT(*), COUNT(groups) FROM judgements
                                           WHERE judge = ?""", [judge]).fetchone()
    return {"items": items, "votes": votes, "readable_share": readable / votes if votes else None}


def none_readable(summary: dict) -> bool:
    """Whether a judge answered votes and none held a readable ranking (the model does not follow the instructions)."""
    return bool(summary["votes"]) and not summary["readable_share"]


def latest_runs(db: Database, limit: int = 20) -> list[dict]:
    """The newest finished judge job's result per judge and prompt set (what Quality → Agreement shows)."""
    seen, runs = set(), []
    for job_id, finished, result in db.execute("""SELECT id, finished_at, result FROM jobs WHERE kind = 'judge'
                                                  AND status = 'done' ORDER BY id DESC LIMIT 200"""):
        result = from_json(result, {})
        key = (result.get("judge"), result.get("prompt_set"))
        if None in key or key in seen:
            continue
        seen.add(key)
        runs.append({"job": job_id, "finished": finished, **result})
        if len(runs) == limit:
            break
    return runs
