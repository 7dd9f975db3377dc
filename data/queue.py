"""The annotation queue: which item an annotator is shown next, held for them while they answer.

The serving rule: an annotator first gets back the item they already hold (a reservation lasts RESERVATION_S, so a
reload or a second tab shows the same item); else an item a reviewer sent back to them to rank again (data.review:
nobody else could rank it), with the reviewer's reason; else a gold item of a set served to them, when their count of answers
reaches the set's gold rate; else, now and then (the set's repeat share, drawn from a seed fixed by the annotator and
their count of answers, so a reload draws the same), an item they ranked at least a day or the set's repeat gap of
rankings ago, unannounced (self-consistency); else, among the open items of the sets served to them (active, and
assigned to them or to nobody) that they have neither ranked nor skipped and that still want rankings once other
annotators' live reservations are counted: the highest set priority first, then the fewest rankings, then the item's
own priority (in a set in the 'uncertain' order, how unsure the active reward model is: data.uncertainty), then the
oldest. An annotator with no open item left is served nothing (repeats only mix into a queue). Which items are open
and which sets are served is defined once, in data.prompt_sets (OPEN_ITEMS, SERVED_TO, WANTED); answers are stored by
data.annotation (submit_ranking, skip_item), which ends the reservation.
"""

import datetime
import math
import random
from dataclasses import dataclass

from sqlite_utils import Database

from data import guidelines
from data.annotation import Item, get_item
from data.prompt_sets import OPEN_ITEMS, SERVED_TO, WANTED
from data.store import now, write_transaction

RESERVATION_S = 600  # how long an item shown to an annotator is held for them
REPEAT_AFTER_S = 24 * 3600  # a ranking this old may be asked again whatever the gap


@dataclass
class Progress:
    ranked: int
    left: int


# The open items (prompt_sets.OPEN_ITEMS) in sets served to this annotator that they have neither ranked nor skipped,
# nor rejected or sent back a ranking of as a reviewer (they read it and its reason: theirs would not be independent),
# and that their set still wants once the rankings in progress elsewhere (live reservations of other annotators,
# repeats aside) are counted: a stricter form of the open items' own `n_rankings < WANTED`.
_OPEN_TO_ANNOTATOR = f"""
    {OPEN_ITEMS} AND {SERVED_TO}
      AND i.n_rankings + (SELECT COUNT(*) FROM reservations v WHERE v.item_id = i.id AND v.annotator_id != :annotator
                          AND v.expires_at > :now AND v.repeat_of IS NULL) < {WANTED}
      AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = i.id AND r.annotator_id = :annotator)
      AND i.id NOT IN (SELECT r.item_id FROM rankings r INDEXED BY rankings_rejected_by  -- once, not once an item
                       WHERE r.review = 'rejected' AND r.reviewed_by = (SELECT name FROM annotators WHERE id = :annotator))
"""

# The reservation this annotator still holds and has not answered: a first ranking, or a repeat of one.
_HELD = f"""
    SELECT v.item_id, v.repeat_of FROM reservations v
    JOIN items i ON i.id = v.item_id JOIN prompts p ON p.id = i.prompt_id JOIN prompt_sets s ON s.name = p.prompt_set
    WHERE v.annotator_id = :annotator AND v.expires_at > :now AND {SERVED_TO}
      AND CASE WHEN v.repeat_of IS NULL
               THEN NOT EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = v.item_id AND r.annotator_id = :annotator
                                AND r.returned = 0)
               ELSE NOT EXISTS (SELECT 1 FROM repeat_rankings x WHERE x.ranking_id = v.repeat_of) END
    ORDER BY v.item_id LIMIT 1
"""

# This annotator's oldest ranking that may be asked again: ranked (not skipped), not gold, not an edited demonstration,
# not repeated yet, in a set whose repeat share is above the draw and whose gap is :gap, made at or before the cutoff.
_REPEAT_CANDIDATE = """
    SELECT r.created_at, r.id, r.item_id FROM rankings r
    JOIN items i ON i.id = r.item_id
    JOIN prompts p ON p.id = i.prompt_id
    WHERE r.annotator_id = :annotator AND (r.created_at, r.id) <= (:cutoff_at, :cutoff_id) AND r.skipped = 0 AND i.origin = 'sampled'
      AND p.prompt_set IN (SELECT name FROM prompt_sets WHERE repeat_share > :draw AND repeat_gap = :gap)
      AND NOT EXISTS (SELECT 1 FROM gold g WHERE g.item_id = r.item_id)
      AND NOT EXISTS (SELECT 1 FROM repeat_rankings x WHERE x.ranking_id = r.id)
    ORDER BY r.created_at, r.id LIMIT 1
"""


def next_item(db: Database, annotator: int) -> Item | None:
    """The item to show this annotator, reserved for them: the one they already hold, else a gold item when one is
    due, else now and then a repeat of an item they ranked (self-consistency, unannounced), else the open item with
    the fewest rankings (among equals: oldest first, or in a set in the 'uncertain' order, the item the reward model
    is least sure about, its random share interleaved; see data.uncertainty). None when nothing is left."""
    now_ = now()
    with write_transaction(db):
        db.execute("DELETE FROM reservations WHERE expires_at <= ?", [now_])
        held = db.execute(_HELD, {"annotator": annotator, "now": now_}).fetchone()
        chosen = tuple(held) if held else _fresh_item(db, annotator, now_)
        if chosen is None:
            return None
        item_id, repeat_of = chosen
        expires = (datetime.datetime.fromisoformat(now_) + datetime.timedelta(seconds=RESERVATION_S)).isoformat(timespec="milliseconds")
        db.execute("INSERT OR REPLACE INTO reservations (item_id, annotator_id, expires_at, repeat_of) VALUES (?, ?, ?, ?)",
                   [item_id, annotator, expires, repeat_of])
    item = get_item(db, item_id)
    item.guideline = guidelines.current_guidelines(db, item.prompt_set)
    item.repeat_of = repeat_of
    item.sent_back = sent_back(db, item_id, annotator)
    return item


def sent_back(db: Database, item_id: int, annotator: int) -> dict | None:
    """When this annotator's ranking of the item was sent back to them to redo: that ranking's id, the reviewer's
    reason and name."""
    row = db.execute("""SELECT id, review_reason, reviewed_by FROM rankings
                        WHERE item_id = ? AND annotator_id = ? AND returned = 1""", [item_id, annotator]).fetchone()
    return {"ranking_id": row[0], "reason": row[1], "by": row[2]} if row else None


def _fresh_item(db: Database, annotator: int, now_: str) -> tuple[int, int | None] | None:
    """(item, the ranking it repeats or None) for an annotator who holds nothing."""
    returned = db.execute(f"""SELECT r.item_id FROM rankings r JOIN items i ON i.id = r.item_id
                              JOIN prompts p ON p.id = i.prompt_id JOIN prompt_sets s ON s.name = p.prompt_set
                              WHERE r.annotator_id = :annotator AND r.returned = 1 AND {SERVED_TO}
                              ORDER BY r.reviewed_at, r.id LIMIT 1""", {"annotator": annotator}).fetchone()
    if returned:  # sent back to them to rank again: before anything new
        return returned[0], None
    gold_item = gold_item_due(db, annotator)  # gold goes to everyone, at its set's rate
    if gold_item:
        return gold_item, None
    row = db.execute(f"SELECT i.id {_OPEN_TO_ANNOTATOR} ORDER BY i.set_priority DESC, i.n_rankings, i.priority DESC, i.id LIMIT 1",
                     {"annotator": annotator, "now": now_}).fetchone()
    if row is None:  # repeats only mix into a queue: an annotator who is done is not served repeats alone
        return None
    return _repeat_due(db, annotator, now_) or (row[0], None)


def _repeat_due(db: Database, annotator: int, now_: str) -> tuple[int, int] | None:
    """(item, ranking) to ask again, with probability its set's `repeat_share`. The draw depends only on the annotator
    and how many answers they have given, so a reload does not change it."""
    answered = db.execute("""SELECT (SELECT COUNT(*) FROM rankings WHERE annotator_id = :a)
                                    + (SELECT COUNT(*) FROM repeat_rankings WHERE annotator_id = :a)""", {"a": annotator}).fetchone()[0]
    draw = repeat_draw(annotator, answered)
    if draw >= db.execute("SELECT COALESCE(MAX(repeat_share), 0) FROM prompt_sets").fetchone()[0]:
        return None  # most draws: no set repeats this often, and no need to look for a candidate
    day_ago = (datetime.datetime.fromisoformat(now_) - datetime.timedelta(seconds=REPEAT_AFTER_S)).isoformat(timespec="milliseconds")
    candidates = []
    for (gap,) in db.execute("SELECT DISTINCT repeat_gap FROM prompt_sets WHERE repeat_share > ?", [draw]).fetchall():
        # a day ago, or at least `gap` of their rankings ago: as old as their (gap + 1)-th newest ranking
        gap_ago = db.execute("SELECT created_at, id FROM rankings WHERE annotator_id = ? ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
                             [annotator, gap]).fetchone()
        cutoff = max((day_ago, math.inf), tuple(gap_ago or ("", 0)))
        candidates += db.execute(_REPEAT_CANDIDATE, {"annotator": annotator, "draw": draw, "gap": gap,
                                                     "cutoff_at": cutoff[0], "cutoff_id": cutoff[1]}).fetchall()
    if not candidates:
        return None
    _, ranking_id, item_id = min(candidates)  # the oldest over the sets
    return item_id, ranking_id


def repeat_draw(annotator: int, answered: int) -> float:
    """Uniform in [0, 1), fixed by the annotator and their count of answers: a repeat is served when it is below the share."""
    return random.Random(f"{annotator}:{answered}").random()


def gold_item_due(db: Database, annotator: int) -> int | None:
    """A gold item of a set served to this annotator that they have not seen, when their count of submissions calls
    for one (a paused or archived set, or one assigned to others, serves no gold either)."""
    row = db.execute(
        f"""SELECT g.item_id, s.gold_every FROM gold g JOIN items i ON i.id = g.item_id JOIN prompts p ON p.id = i.prompt_id
           JOIN prompt_sets s ON s.name = p.prompt_set
           WHERE s.gold_every > 0 AND {SERVED_TO}
             AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = g.item_id AND r.annotator_id = :annotator)
           ORDER BY g.item_id LIMIT 1""", {"annotator": annotator}).fetchone()
    if row is None:
        return None
    done = db.execute("SELECT COUNT(*) FROM rankings WHERE annotator_id = ?", [annotator]).fetchone()[0]
    return row[0] if (done + 1) % row[1] == 0 else None


def progress(db: Database, annotator: int) -> Progress:
    return Progress(ranked_count(db, annotator), items_left(db, annotator))


def ranked_count(db: Database, annotator: int) -> int:
    """What the annotator has ranked, self-consistency repeats included (a count that stood still would give them away)."""
    return db.execute("""SELECT (SELECT COUNT(*) FROM rankings WHERE annotator_id = :a AND skipped = 0)
                              + (SELECT COUNT(*) FROM repeat_rankings WHERE annotator_id = :a AND skipped = 0)""",
                      {"a": annotator}).fetchone()[0]


def rejected_count(db: Database, annotator: int) -> int:
    """How many of the annotator's rankings a reviewer rejected or sent back (they stay counted as ranked; a skip or a
    flag sent without a ranking is not among them)."""
    return db.execute("SELECT COUNT(*) FROM rankings WHERE annotator_id = ? AND review = 'rejected' AND skipped = 0",
                      [annotator]).fetchone()[0]


def items_left(db: Database, annotator: int) -> int:
    """How many items this annotator could still be served, those sent back to them to rank again included. It visits
    every open item: at 100k items, call it sparingly."""
    return db.execute(f"""SELECT (SELECT COUNT(*) {_OPEN_TO_ANNOTATOR})
                                 + (SELECT COUNT(*) FROM rankings WHERE annotator_id = :annotator AND returned = 1)""",
                      {"annotator": annotator, "now": now()}).fetchone()[0]
