"""The review pass: queues of rankings worth a second look, and what a reviewer decides about one.

Queues: rankings flagged by their annotator, rankings with a comment, items skipped by several annotators, gold
items failed, items whose rankings disagree most, and the rankings of annotators whose pace or pattern is off (a
median time far below the team's, nearly everything tied, the first-shown completion ranked best far more often than
chance). Actions on an unreviewed ranking: accept it; reject it with a
reason (kept and marked, and left out of training, agreement, the leaderboard and exports unless asked for); or send
it back (rejected, and the item returns to the queue for another annotator). Every action is in `review_events`.

Flags that speak against a ranking as training data ("all are bad", "offensive/unsafe") keep it out of the trainers
and the pairs export by default too, reviewed or not (`EXCLUDED_FROM_TRAINING`).
"""

import math
import statistics

from sqlite_utils import Database

from data import leaderboard, prompt_sets, quality, undo
from data.accounts import User, require_role
from data.rankings import validate_order
from data.store import from_json, now, write_transaction

QUEUES = {"flagged": "flagged by their annotator", "comments": "with a comment", "recent": "every ranking, newest first",
          "skipped": "items skipped by 2+ annotators",
          "gold": "gold items failed", "disagreement": "items whose rankings disagree most",
          "pattern": "annotators whose pace or pattern is off"}
PATTERN_MIN_RANKINGS = 10  # an annotator's figures mean something from here on
# Why a queue is empty: what puts a ranking in it (the walk found two empty queues that read as broken).
EMPTY_BECAUSE = {
    "flagged": "no ranking is flagged by its annotator",
    "comments": "no ranking has a comment",
    "skipped": "no item was skipped by two or more annotators",
    "gold": "no gold item was ranked against its answer (Quality → Gold items marks them)",
    "disagreement": "no item has two rankings that order a pair of its completions oppositely (a tie against an order "
                    "is not counted: Quality → Item consensus shows ties)",
    "pattern": f"no annotator's pace or pattern is off, judged once they have {PATTERN_MIN_RANKINGS} rankings: a median "
               f"time under a third of the team's (once 3 annotators have {PATTERN_MIN_RANKINGS}), 90% of pairs tied, or "
               "the first-shown answer ranked best beyond chance",
    "recent": "nobody has ranked or skipped anything yet",
}
BAD_FLAGS = ("all are bad", "offensive/unsafe")
# Rankings kept out of the trainers and the pairs export unless asked for (r: rankings).
EXCLUDED_FROM_TRAINING = f"""(r.review = 'rejected' OR EXISTS (SELECT 1 FROM json_each(r.flags)
                              WHERE value IN ({', '.join(repr(f) for f in BAD_FLAGS)})))"""
_COLUMNS = f"""r.id AS ranking_id, r.item_id, a.name AS annotator, r.skipped, r.groups, r.flags, r.comment, r.review,
              r.review_reason, r.created_at, p.prompt_set, substr(p.text, 1, 200) AS prompt, r.display_order,
              (SELECT COUNT(*) FROM completions c WHERE c.item_id = r.item_id) AS k,
              {undo.LAST_REVIEW_ACTION} AS review_action"""
_FROM = """FROM rankings r JOIN annotators a ON a.id = r.annotator_id JOIN items i ON i.id = r.item_id
           JOIN prompts p ON p.id = i.prompt_id"""
_QUEUE_SQL = {
    "flagged": f"SELECT {_COLUMNS} {_FROM} WHERE r.flags != '[]' ORDER BY r.review != '', r.id DESC LIMIT ?",
    "comments": f"SELECT {_COLUMNS} {_FROM} WHERE r.comment != '' ORDER BY r.review != '', r.id DESC LIMIT ?",
    "recent": f"SELECT {_COLUMNS} {_FROM} ORDER BY r.id DESC LIMIT ?",  # a sample of plain work too, through the key
    "skipped": f"""SELECT {_COLUMNS} {_FROM} WHERE r.item_id IN (SELECT item_id FROM rankings WHERE skipped = 1
                   GROUP BY item_id HAVING COUNT(*) >= 2) ORDER BY r.item_id DESC, r.id LIMIT ?""",
    "gold": f"""SELECT {_COLUMNS} {_FROM} JOIN ranking_stats s ON s.ranking_id = r.id WHERE s.gold_passed = 0
                ORDER BY r.review != '', r.id DESC LIMIT ?""",
    "disagreement": f"""SELECT {_COLUMNS} {_FROM} JOIN item_stats s ON s.item_id = r.item_id
                        WHERE s.disagree > 0
                        ORDER BY 1.0 * s.agree / (s.agree + s.disagree), r.item_id, r.id LIMIT ?""",
}


def review_queue(db: Database, queue: str, limit: int = 100, annotator: str | None = None) -> list[dict]:
    """The rankings of one queue, unreviewed first (skipped items and disagreement: grouped by item; pattern: with
    why each annotator is in it). `annotator`: for the "recent" queue, only this person's (their newest, through the
    annotator index), a sample of one person's work to accept or send back."""
    if queue not in QUEUES:
        raise ValueError(f"unknown review queue {queue!r}: use one of {', '.join(QUEUES)}")
    if queue == "recent" and annotator:
        return [_row(row) for row in db.query(f"""SELECT {_COLUMNS} {_FROM} WHERE a.name = ?
                                                  ORDER BY r.created_at DESC, r.id DESC LIMIT ?""", [annotator, limit])]
    if queue == "pattern":
        return _pattern_queue(db, limit)
    if queue in ("gold", "disagreement"):
        quality.refresh(db)  # their figures come from the statistics tables
    return [_row(row) for row in db.query(_QUEUE_SQL[queue], [limit])]


def _row(row: dict) -> dict:
    """A queue row with its JSON read; the display order as the annotator saw it (the stored order if unreadable)."""
    try:
        order = validate_order(from_json(row["display_order"]), row["k"])
    except (TypeError, ValueError, RecursionError):
        order = list(range(row["k"]))
    return {**row, "groups": from_json(row["groups"]), "flags": from_json(row["flags"]), "display_order": order}


def off_pattern(db: Database) -> dict[str, str]:
    """Annotators (name: why) with PATTERN_MIN_RANKINGS or more rankings whose median time is under a third of the
    team's (the median of 3+ annotators' medians), who tie 90% of pairs or more, or who rank the completion shown
    first best more often than chance by over 3 standard errors. From the incremental statistics (one row each)."""
    table = [r for r in quality.annotator_table(db) if r["rankings"] >= PATTERN_MIN_RANKINGS]
    medians = [r["median_seconds"] for r in table if r["median_seconds"] is not None]
    team = statistics.median(medians) if len(medians) >= 3 else None
    found = {}
    for r in table:
        why = []
        if team and r["median_seconds"] is not None and r["median_seconds"] < team / 3:
            why.append(f"median {r['median_seconds']:.1f} s a ranking against the team's {team:.1f} s")
        if r["tie_rate"] is not None and r["tie_rate"] >= 0.9:
            why.append(f"{r['tie_rate']:.0%} of pairs tied")
        seen, chance, n = r["first_shown_ranked_best"], r["first_shown_expected"], r["rankings"]
        if 0 < chance < 1 and (seen - chance) / math.sqrt(chance * (1 - chance) / n) > 3:
            why.append(f"the first completion shown ranked best {seen:.0%} of {n} times (chance: {chance:.0%})")
        if why:
            found[r["annotator"]] = "; ".join(why)
    return found


def _pattern_queue(db: Database, limit: int) -> list[dict]:
    why = off_pattern(db)
    if not why:
        return []
    rows = db.query(f"""SELECT {_COLUMNS} {_FROM} WHERE a.name IN ({', '.join('?' * len(why))})
                        ORDER BY r.review != '', r.id DESC LIMIT ?""", [*why, limit])
    return [{**_row(row), "why": why[row["annotator"]]} for row in rows]


def training_counts(db: Database, prompt_sets: list[str] | None = None, annotators: list[str] | None = None) -> dict[str, int]:
    """The rankings and comparisons the trainers learn from: all of them but those left out (`EXCLUDED_FROM_TRAINING`),
    which are counted through the partial indexes of rejected and flagged rankings, so this stays cheap at any size.
    `prompt_sets`, `annotators`: only theirs, without the comparisons (`training_rankings_of`)."""
    if prompt_sets or annotators:
        return training_rankings_of(db, prompt_sets, annotators)
    total, comparisons = (db.execute("SELECT COUNT(*) FROM rankings WHERE skipped = 0").fetchone()[0],
                          db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0])
    left_out, left_out_pairs = db.execute(f"""
        SELECT COUNT(*), COALESCE(SUM((SELECT COUNT(*) FROM comparisons c WHERE c.ranking_id = e.id)), 0) FROM (
            SELECT r.id FROM rankings r WHERE r.review = 'rejected' AND r.skipped = 0
            UNION SELECT r.id FROM rankings r WHERE r.flags != '[]' AND r.skipped = 0 AND {EXCLUDED_FROM_TRAINING}) e""").fetchone()
    return {"rankings": total - left_out, "comparisons": comparisons - left_out_pairs, "left_out": left_out}


def of_sets_and_people(prompt_sets: list[str] | None, annotators: list[str] | None, table: str = "") -> tuple[list[str], list]:
    """SQL conditions (and their parameters) on rankings (`table`: their alias and a dot) of these prompt sets and by
    these annotators (None or empty: no condition), each through the rankings' item or annotator key."""
    of, params = [], []
    if prompt_sets:
        of.append(f"""{table}item_id IN (SELECT i.id FROM items i JOIN prompts p ON p.id = i.prompt_id
                                        WHERE p.prompt_set IN ({', '.join('?' * len(prompt_sets))}))""")
        params += prompt_sets
    if annotators:
        of.append(f"{table}annotator_id IN (SELECT id FROM annotators WHERE name IN ({', '.join('?' * len(annotators))}))")
        params += annotators
    return of, params


def training_rankings_of(db: Database, prompt_sets: list[str] | None, annotators: list[str] | None = None) -> dict[str, int]:
    """`training_counts` of some prompt sets and/or annotators, the comparisons left out: every ranking of the sets (by
    the annotators) less the skipped and the left-out ones, each count through an index (~30 ms for a set of 50,000
    rankings)."""
    of, params = of_sets_and_people(prompt_sets, annotators)
    of = " AND ".join(of)
    every = "INDEXED BY rankings_annotator" if annotators else ""  # a few people's rankings: fewer than a set's
    total, skipped = (db.execute(f"SELECT COUNT(*) FROM rankings {index} WHERE {where} AND {of}", params).fetchone()[0]
                      # each through an index alone (no statistics tell SQLite so)
                      for index, where in ((every, "1"), ("INDEXED BY rankings_skipped", "skipped = 1")))
    left_out = db.execute(f"""
        SELECT COUNT(*) FROM (
            SELECT r.id, r.item_id, r.annotator_id FROM rankings r WHERE r.review = 'rejected' AND r.skipped = 0
            UNION SELECT r.id, r.item_id, r.annotator_id FROM rankings r
                  WHERE r.flags != '[]' AND r.skipped = 0 AND {EXCLUDED_FROM_TRAINING}) e
        WHERE {of}""", params).fetchone()[0]
    return {"rankings": total - skipped - left_out, "left_out": left_out}


def all_tied(db: Database, prompt_sets: list[str] | None = None, annotators: list[str] | None = None) -> int:
    """How many of the rankings the trainers learn from (of `prompt_sets`, by `annotators`; None: all) tie every answer:
    no pair, so DPO leaves them out unless it learns from ties. Through the partial index of such rankings (a few, at
    any size)."""
    of, params = of_sets_and_people(prompt_sets, annotators, "r.")
    return db.execute(f"""SELECT COUNT(*) FROM rankings r INDEXED BY rankings_all_tied
                          WHERE r.skipped = 0 AND CASE WHEN json_valid(r.groups) THEN json_array_length(r.groups) END = 1
                                AND NOT {EXCLUDED_FROM_TRAINING} {''.join(f' AND {c}' for c in of)}""", params).fetchone()[0]


def training_prompts(db: Database, prompt_sets: list[str] | None = None, at_most: int | None = None,
                     annotators: list[str] | None = None, with_pairs: bool = False) -> int:
    """How many prompts the rankings the trainers learn from were given on (those left out aside:
    `EXCLUDED_FROM_TRAINING`), of `prompt_sets` and by `annotators` (None: all): what a held-out share splits, since a
    prompt's rankings are held out together. `with_pairs`: rankings that imply a pair only (all tied: none, as DPO
    reads them). `at_most`: stop counting there (a count that cannot change the answer is read in a few rows, not
    every ranking)."""
    sets = f"AND p.prompt_set IN ({', '.join('?' * len(prompt_sets))})" if prompt_sets else ""
    people = " ".join(f"AND {c}" for c in of_sets_and_people(None, annotators, "r.")[0])
    pairs = "AND CASE WHEN json_valid(r.groups) THEN json_array_length(r.groups) END > 1" if with_pairs else ""
    limit = f"LIMIT {int(at_most)}" if at_most is not None else ""
    return db.execute(f"""SELECT COUNT(*) FROM (SELECT DISTINCT i.prompt_id FROM rankings r JOIN items i ON i.id = r.item_id
                          {"JOIN prompts p ON p.id = i.prompt_id" if sets else ""}
                          WHERE r.skipped = 0 AND NOT {EXCLUDED_FROM_TRAINING} {sets} {people} {pairs} {limit})""",
                      [*(prompt_sets or []), *(annotators or [])]).fetchone()[0]


def queue_sizes(db: Database) -> dict[str, int]:
    """Unreviewed rankings in the flagged and comments queues (indexed counts)."""
    return {"flagged": db.execute("SELECT COUNT(*) FROM rankings WHERE flags != '[]' AND review = ''").fetchone()[0],
            "comments": db.execute("SELECT COUNT(*) FROM rankings WHERE comment != '' AND review = ''").fetchone()[0]}


def accept(db: Database, ranking_id: int, actor: User | None = None, by: str = "") -> None:
    with write_transaction(db):
        _unreviewed(db, ranking_id, actor)
        _decide(db, ranking_id, "accepted", "", actor.name if actor else by or "command line")
        _record(db, ranking_id, "accept", "", actor, by)


def reject(db: Database, ranking_id: int, reason: str, actor: User | None = None, by: str = "",
           send_back: bool = False) -> bool:
    """Mark a ranking rejected: the statistics and leaderboard counts forget it, exports and trainers leave it out.
    `send_back`: its item also needs one more ranking, so the queue serves it to another annotator, or, when nobody
    else the item's set is served to can rank it (or it was a skip), back to the annotator who made it, next in their
    queue (after an item they hold) and with the reason: their new answer replaces this one (data.annotation).
    Returns whether it went back to its annotator."""
    reason = reason.strip()
    if not reason:
        raise ValueError("say why the ranking is rejected (the annotator and the audit log see the reason)")
    with write_transaction(db):
        row = _unreviewed(db, ranking_id, actor)
        if not row["skipped"]:
            quality.take_back(db, ranking_id, row["item_id"], None, row["origin"] == "sampled")
            if row["origin"] == "sampled":
                leaderboard.take_back(db, ranking_id, row["item_id"], row["groups"])
            if send_back:
                db.execute("UPDATE items SET n_rankings = n_rankings - 1 WHERE id = ?", [row["item_id"]])
        _decide(db, ranking_id, "rejected", reason, actor.name if actor else by or "command line")
        _record(db, ranking_id, "send back" if send_back else "reject", reason, actor, by)
        returned = send_back and goes_back_to_its_annotator(db, ranking_id)
        if returned:
            db.execute("UPDATE rankings SET returned = 1 WHERE id = ?", [ranking_id])
    return returned


def send_back(db: Database, ranking_id: int, reason: str = "sent back for another ranking", actor: User | None = None,
              by: str = "") -> bool:
    """`reject` with `send_back`: True when the ranking went back to its own annotator to redo."""
    return reject(db, ranking_id, reason, actor, by, send_back=True)


def goes_back_to_its_annotator(db: Database, ranking_id: int, reviewer: int | None = None) -> bool:
    """Where a send back of this ranking goes: back to the annotator who made it when it is a skip (or a flag sent
    without a ranking: it took no ranking from the item, so another annotator's would add nothing the reviewer asked
    for) or nobody else the item's set is served to can rank the item, the set is still served to them, and the
    ranking is not kept for a repeat or a demonstration made from it; else to the queue for another annotator.
    `reviewer`: the account about to decide (before its decision is recorded), who is not served the item either."""
    row = db.execute("""SELECT r.item_id, r.annotator_id, r.skipped, p.prompt_set FROM rankings r
                        JOIN items i ON i.id = r.item_id JOIN prompts p ON p.id = i.prompt_id WHERE r.id = ?""",
                     [ranking_id]).fetchone()
    if row is None:
        return False
    item_id, annotator, skipped, prompt_set = row
    return ((skipped or not others_who_can_rank(db, item_id, reviewer)) and annotator in prompt_sets.served_people(db, prompt_set)
            and not undo.linked_elsewhere(db, ranking_id))


def others_who_can_rank(db: Database, item_id: int, reviewer: int | None = None) -> int:
    """How many of the people the item's set is served to have not ranked, skipped or been sent back from it, nor
    rejected or sent back a ranking of it as reviewers (`reviewer`: one about to): who the queue can serve it to if it
    is sent back."""
    prompt_set = db.execute("SELECT p.prompt_set FROM items i JOIN prompts p ON p.id = i.prompt_id WHERE i.id = ?",
                            [item_id]).fetchone()
    if prompt_set is None:
        return 0
    answered = {row[0] for row in db.execute("""
        SELECT annotator_id FROM rankings WHERE item_id = :item
        UNION SELECT a.id FROM rankings r JOIN annotators a ON a.name = r.reviewed_by
              WHERE r.item_id = :item AND r.review = 'rejected'""", {"item": item_id})} | {reviewer}
    return sum(person not in answered for person in prompt_sets.served_people(db, prompt_set[0]))


def review_events(db: Database, limit: int = 50) -> list[dict]:
    """The newest decisions, a send back with where its item went since: to another annotator's queue, back to its
    annotator to redo, or redone (the ranking was replaced by its annotator's new one)."""
    return list(db.query("""
        SELECT e.*, CASE WHEN e.action != 'send back' THEN ''
                         WHEN r.id IS NULL THEN 'redone by its annotator'
                         WHEN r.returned = 1 THEN 'with its annotator, to redo'
                         ELSE 'in the queue for another annotator' END AS since
        FROM review_events e LEFT JOIN rankings r ON r.id = e.ranking_id ORDER BY e.id DESC LIMIT ?""", [limit]))


def _unreviewed(db: Database, ranking_id: int, actor: User | None) -> dict:
    """The ranking a reviewer (`actor`, still a reviewer or admin; None: the command line) may decide on: not yet
    reviewed, and not their own."""
    require_role(db, actor, "reviewer")
    row = next(iter(db.query("""SELECT r.item_id, r.annotator_id, r.skipped, r.groups, r.review, i.origin FROM rankings r
                                JOIN items i ON i.id = r.item_id WHERE r.id = ?""", [ranking_id])), None)
    if row is None:
        raise LookupError(f"there is no ranking {ranking_id}: see `python -m data review` for the queues")
    if actor is not None and row["annotator_id"] == actor.id:
        raise ValueError(f"ranking {ranking_id} is your own: another reviewer or an admin decides on it")
    if row["review"]:
        raise ValueError(f"ranking {ranking_id} was already reviewed ({row['review']}): a decision is not changed")
    return row


def _decide(db: Database, ranking_id: int, review: str, reason: str, by: str) -> None:
    db.execute("UPDATE rankings SET review = ?, review_reason = ?, reviewed_by = ?, reviewed_at = ? WHERE id = ?",
               [review, reason, by, now(), ranking_id])


def _record(db: Database, ranking_id: int, action: str, reason: str, actor: User | None, by: str) -> None:
    db.execute("INSERT INTO review_events (ranking_id, action, reason, by, at) VALUES (?, ?, ?, ?, ?)",
               [ranking_id, action, reason, actor.name if actor else by or "command line", now()])
