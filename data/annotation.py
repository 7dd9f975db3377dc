"""The annotation queue and the submission of rankings."""

import datetime
import math
import random
from dataclasses import dataclass, field

from sqlite_utils import Database

from data import agreement, gold, guidelines, quality
from data.conversation import as_messages
from data.guidelines import Guideline
from data.rankings import FLAGS, ranking_to_pairs, tie_count, validate_ranking
from data.prompt_sets import OPEN_ITEMS, SERVED_TO, WANTED, get_set, update_settings
from data.store import from_json, now, to_json, write_transaction

RESERVATION_S = 600  # how long an item shown to an annotator is held for them
MAX_COMMENT = 5_000  # characters: a note on an item, not a document
REPEAT_AFTER_S = 24 * 3600  # a ranking this old may be asked again whatever the gap
MAX_REPEAT_SHARE = 0.5


@dataclass
class Completion:
    id: int
    position: int
    text: str
    finish_reason: str | None = None  # "length": cut at the token cap (n_tokens), so the answer may be unfinished
    n_tokens: int | None = None

    @property
    def cut(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class Item:
    id: int
    prompt_id: int
    prompt: str
    prompt_set: str
    completions: list[Completion]  # in stored order: position 0 is A in exports
    messages: list[dict] = field(default_factory=list)  # the conversation before the turn to rank (one user turn for plain text)
    guideline: "Guideline | None" = None  # the set's current guidelines when the item was served
    repeat_of: int | None = None  # a self-consistency repeat: the id of this annotator's first ranking of the item

    @property
    def k(self) -> int:
        return len(self.completions)


@dataclass
class Progress:
    ranked: int
    left: int


@dataclass
class Submitted:
    ranking_id: int
    was_new: bool  # False when this annotator had already submitted this item (double submit)


def annotator_id(db: Database, name: str) -> int:
    """The id of the annotator with this name; an existing account is returned unchanged.

    A new name (from an imported file or a script) is provenance only: a disabled account
    with origin 'import' and no password, which nobody can log in as until an admin enables it.
    """
    name = name.strip()
    if not name:
        raise ValueError("an annotator needs a name: it cannot be blank")
    row = db.execute("SELECT id FROM annotators WHERE name = ?", [name]).fetchone()
    if row:
        return row[0]
    with write_transaction(db):
        db.execute("INSERT OR IGNORE INTO annotators (name, disabled, origin, created_at) VALUES (?, 1, 'import', ?)",
                   [name, now()])
    return db.execute("SELECT id FROM annotators WHERE name = ?", [name]).fetchone()[0]


def annotator_names(db: Database) -> list[str]:
    return [row[0] for row in db.execute("SELECT name FROM annotators ORDER BY name")]


# The open items (prompt_sets.OPEN_ITEMS) in sets served to this annotator that they have neither ranked nor skipped,
# and that their set still wants once the rankings in progress elsewhere (live reservations of other annotators,
# repeats aside) are counted: a stricter form of the open items' own `n_rankings < WANTED`.
_OPEN_TO_ANNOTATOR = f"""
    {OPEN_ITEMS} AND {SERVED_TO}
      AND i.n_rankings + (SELECT COUNT(*) FROM reservations v WHERE v.item_id = i.id AND v.annotator_id != :annotator
                          AND v.expires_at > :now AND v.repeat_of IS NULL) < {WANTED}
      AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = i.id AND r.annotator_id = :annotator)
"""

# The reservation this annotator still holds and has not answered: a first ranking, or a repeat of one.
_HELD = f"""
    SELECT v.item_id, v.repeat_of FROM reservations v
    JOIN items i ON i.id = v.item_id JOIN prompts p ON p.id = i.prompt_id JOIN prompt_sets s ON s.name = p.prompt_set
    WHERE v.annotator_id = :annotator AND v.expires_at > :now AND {SERVED_TO}
      AND CASE WHEN v.repeat_of IS NULL
               THEN NOT EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = v.item_id AND r.annotator_id = :annotator)
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
    return item


def _fresh_item(db: Database, annotator: int, now_: str) -> tuple[int, int | None] | None:
    """(item, the ranking it repeats or None) for an annotator who holds nothing."""
    gold_item = gold.gold_item_due(db, annotator)  # gold goes to everyone, at its set's rate
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


def repeat_settings(db: Database, prompt_set: str) -> dict:
    """The set's self-consistency settings: `repeat_share` of the queue, after `repeat_gap` rankings (or a day)."""
    settings = get_set(db, prompt_set)
    return {"repeat_share": settings["repeat_share"], "repeat_gap": settings["repeat_gap"]}


def set_repeat_settings(db: Database, prompt_set: str, share: float, gap: int) -> None:
    """Re-serve `share` (0 to 0.5) of each annotator's queue as repeats of items they ranked `gap` (>= 1) rankings or a day ago."""
    if not 0 <= share <= MAX_REPEAT_SHARE:
        raise ValueError(f"the repeat share is between 0 and {MAX_REPEAT_SHARE:.0%} of the queue, got {share:.0%}")
    if gap < 1:
        raise ValueError(f"the repeat gap is at least 1 ranking, got {gap}")
    update_settings(db, prompt_set, repeat_share=share, repeat_gap=gap)


def completions_of(db: Database, item_id: int) -> list[Completion]:
    rows = db.execute(
        "SELECT id, position, text, finish_reason, n_tokens FROM completions WHERE item_id = ? ORDER BY position", [item_id]
    ).fetchall()
    return [Completion(*row) for row in rows]


def get_item(db: Database, item_id: int) -> Item:
    row = db.execute(
        "SELECT i.id, i.prompt_id, p.text, p.prompt_set, p.messages FROM items i JOIN prompts p ON p.id = i.prompt_id WHERE i.id = ?",
        [item_id],
    ).fetchone()
    if row is None:
        raise LookupError(f"item {item_id} does not exist")
    return Item(row[0], row[1], row[2], row[3], completions_of(db, item_id), as_messages(row[2], row[4]))


def progress(db: Database, annotator: int) -> Progress:
    return Progress(ranked_count(db, annotator), items_left(db, annotator))


def ranked_count(db: Database, annotator: int) -> int:
    """What the annotator has ranked, self-consistency repeats included (a count that stood still would give them away)."""
    return db.execute("""SELECT (SELECT COUNT(*) FROM rankings WHERE annotator_id = :a AND skipped = 0)
                              + (SELECT COUNT(*) FROM repeat_rankings WHERE annotator_id = :a AND skipped = 0)""",
                      {"a": annotator}).fetchone()[0]


def items_left(db: Database, annotator: int) -> int:
    """How many items this annotator could still be served. It visits every open item: at 100k items, call it sparingly."""
    return db.execute(f"SELECT COUNT(*) {_OPEN_TO_ANNOTATOR}", {"annotator": annotator, "now": now()}).fetchone()[0]


def display_order(item_id: int, annotator: int, k: int, repeat: bool = False) -> list[int]:
    """The order this annotator sees the completions in: shuffled, but stable across reloads.

    A repeat is shown in another order than the first time (for k = 2: reversed), so it is not recognised by its layout.

    >>> display_order(7, 3, 2, repeat=True) == display_order(7, 3, 2)[::-1]
    True
    """
    order = list(range(k))
    random.Random(f"{annotator}:{item_id}").shuffle(order)
    if not repeat or k < 2:
        return order
    first, rng = list(order), random.Random(f"{annotator}:{item_id}:repeat")
    while order == first:
        rng.shuffle(order)
    return order


def submit_ranking(
    db: Database,
    item_id: int,
    annotator: int,
    groups: list[list[int]],
    shown_order: list[int],
    seconds: float | None = None,
    flags: list[str] = (),
    comment: str = "",
    guideline_version: int | None = None,
    repeat_of: int | None = None,
) -> Submitted:
    """Store a ranking and the comparisons it implies, in one transaction, with the guideline version it was made under.

    A second submission of the same item by the same annotator stores nothing and
    returns the first one (a double click or a resubmitted form). With `repeat_of` (the item was served as a
    self-consistency repeat: `Item.repeat_of`) it goes to `repeat_rankings` instead, compared with the first ranking,
    and `Submitted.ranking_id` is the repeat's id.
    """
    k = len(completions_of(db, item_id))
    groups = validate_ranking(groups, k)
    return _store(db, item_id, annotator, groups, shown_order, seconds, flags, comment, guideline_version, repeat_of)


def skip_item(db: Database, item_id: int, annotator: int, shown_order: list[int], seconds=None, flags=(), comment="",
              guideline_version: int | None = None, repeat_of: int | None = None) -> Submitted:
    """Record that this annotator skipped the item, so it leaves their queue (or, with `repeat_of`, that they skipped the repeat)."""
    return _store(db, item_id, annotator, None, shown_order, seconds, flags, comment, guideline_version, repeat_of)


def _store(db, item_id, annotator, groups, shown_order, seconds, flags, comment, guideline_version, repeat_of) -> Submitted:
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise ValueError(f"unknown flags {unknown}: use {list(FLAGS)}")
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"the comment is {len(comment):,} characters: keep it under {MAX_COMMENT:,}")
    with write_transaction(db):
        if repeat_of is not None:  # only as served (Item.repeat_of): an import or a script never makes a repeat
            return _store_repeat(db, item_id, annotator, groups, shown_order, seconds, flags, comment, guideline_version,
                                 repeat_of)
        existing = db.execute(
            "SELECT id FROM rankings WHERE item_id = ? AND annotator_id = ?", [item_id, annotator]
        ).fetchone()
        if existing:
            return Submitted(existing[0], was_new=False)
        ranking_id = db.execute(
            """INSERT INTO rankings (item_id, annotator_id, skipped, groups, display_order, seconds, flags, comment, created_at,
                                     guideline_version)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [item_id, annotator, int(groups is None), None if groups is None else to_json(groups),
             to_json(list(shown_order)), seconds, to_json(list(flags)), comment.strip(), now(), guideline_version],
        ).lastrowid
        if groups is not None:
            _store_comparisons(db, item_id, ranking_id, groups)
            db.execute("UPDATE items SET n_rankings = n_rankings + 1 WHERE id = ?", [item_id])
        db.execute("DELETE FROM reservations WHERE item_id = ? AND annotator_id = ?", [item_id, annotator])
    return Submitted(ranking_id, was_new=True)


def _store_repeat(db, item_id, annotator, groups, shown_order, seconds, flags, comment, guideline_version, repeat_of) -> Submitted:
    """A self-consistency repeat, kept apart from `rankings` (never a second vote) and compared with the first at once."""
    first = db.execute("SELECT groups FROM rankings WHERE id = ? AND item_id = ? AND annotator_id = ? AND skipped = 0",
                       [repeat_of, item_id, annotator]).fetchone()
    if first is None:
        raise ValueError(f"ranking {repeat_of} is not your ranking of item {item_id}: "
                         "a repeat answers the item's repeat_of as next_item served it")
    existing = db.execute("SELECT id FROM repeat_rankings WHERE ranking_id = ?", [repeat_of]).fetchone()
    if existing:
        return Submitted(existing[0], was_new=False)
    k = len(completions_of(db, item_id))
    agree, disagree, tau = (0, 0, None) if groups is None else self_agreement(from_json(first[0]), groups, k)
    repeat_id = db.execute(
        """INSERT INTO repeat_rankings (ranking_id, item_id, annotator_id, skipped, groups, display_order, seconds, flags, comment,
                                        guideline_version, agree, disagree, tau_b, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [repeat_of, item_id, annotator, int(groups is None), None if groups is None else to_json(groups), to_json(list(shown_order)),
         seconds, to_json(list(flags)), comment.strip(), guideline_version, agree, disagree, tau, now()]).lastrowid
    db.execute("DELETE FROM reservations WHERE item_id = ? AND annotator_id = ?", [item_id, annotator])
    return Submitted(repeat_id, was_new=True)


def self_agreement(first: list[list[int]], again: list[list[int]], k: int) -> tuple[int, int, float | None]:
    """(pairs ordered the same way, pairs ordered the other way, Kendall tau-b) between two rankings of one item.

    >>> self_agreement([[0], [1], [2, 3]], [[1], [0], [2], [3]], 4)  # 3 / sqrt(5 * 6): one pair tied the first time
    (4, 1, 0.5477225575051662)
    """
    pa = agreement.pair_agreement(first, again, k)
    return pa.agree, pa.disagree, quality.tau_b(pa, tie_count(first), tie_count(again), k)


def _store_comparisons(db: Database, item_id: int, ranking_id: int, groups: list[list[int]]) -> None:
    completion_id = {c.position: c.id for c in completions_of(db, item_id)}
    db.conn.executemany(
        "INSERT INTO comparisons (ranking_id, chosen_id, rejected_id, margin) VALUES (?, ?, ?, ?)",
        [(ranking_id, completion_id[p.chosen], completion_id[p.rejected], p.margin) for p in ranking_to_pairs(groups)],
    )


def rankings_of_item(db: Database, item_id: int) -> list[dict]:
    rows = db.query(
        """SELECT r.id, a.name AS annotator, r.skipped, r.groups, r.display_order, r.flags, r.comment, r.created_at
           FROM rankings r JOIN annotators a ON a.id = r.annotator_id WHERE r.item_id = ? ORDER BY r.id""",
        [item_id],
    )
    return [{**row, "groups": from_json(row["groups"]), "display_order": from_json(row["display_order"]),
             "flags": from_json(row["flags"])} for row in rows]
