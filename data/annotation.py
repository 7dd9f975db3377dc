"""What an annotator answers: the item as shown (its completions, in their display order) and the answer stored,
a ranking with the comparisons it implies, a skip, or a self-consistency repeat kept apart. Which item is served next
is data.queue's.
"""

import random
from dataclasses import dataclass, field

from sqlite_utils import Database

from data import agreement, audit, quality
from data.conversation import as_messages
from data.guidelines import Guideline
from data.rankings import FLAGS, ranking_to_pairs, tie_count, validate_ranking
from data.prompt_sets import get_set, update_settings
from data.store import from_json, now, to_json, write_transaction

MAX_COMMENT = 5_000  # characters: a note on an item, not a document
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
    sent_back: dict | None = None  # their ranking of it was sent back to them to redo: the reviewer's reason and name

    @property
    def k(self) -> int:
        return len(self.completions)


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


def annotator_names(db: Database, ranked: bool = False) -> list[str]:
    """Everyone who can be served items; `ranked`: only those with a ranking (whose rankings a picker can choose)."""
    who = ("WHERE EXISTS (SELECT 1 FROM rankings r WHERE r.annotator_id = a.id AND r.skipped = 0)"  # the annotator index
           if ranked else "")
    return [row[0] for row in db.execute(f"SELECT a.name FROM annotators a {who} ORDER BY a.name")]


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


@dataclass(frozen=True)
class Answer:
    """One annotator's answer to a served item, as it reaches the store."""
    item_id: int
    annotator: int
    groups: list[list[int]] | None  # stored positions, best first; None: skipped
    shown_order: list[int]  # the stored position shown at each letter
    seconds: float | None = None
    flags: tuple[str, ...] = ()
    comment: str = ""
    guideline_version: int | None = None  # the guidelines it was made under
    repeat_of: int | None = None  # served as a self-consistency repeat of this ranking (Item.repeat_of)


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
    groups = validate_ranking(groups, len(completions_of(db, item_id)))
    return _store(db, Answer(item_id, annotator, groups, list(shown_order), seconds, tuple(flags), comment,
                             guideline_version, repeat_of))


def skip_item(db: Database, item_id: int, annotator: int, shown_order: list[int], seconds=None, flags=(), comment="",
              guideline_version: int | None = None, repeat_of: int | None = None) -> Submitted:
    """Record that this annotator skipped the item, so it leaves their queue (or, with `repeat_of`, that they skipped the repeat)."""
    return _store(db, Answer(item_id, annotator, None, list(shown_order), seconds, tuple(flags), comment,
                             guideline_version, repeat_of))


def _store(db: Database, answer: Answer) -> Submitted:
    unknown = [f for f in answer.flags if f not in FLAGS]
    if unknown:
        raise ValueError(f"unknown flags {unknown}: use {list(FLAGS)}")
    if len(answer.comment) > MAX_COMMENT:
        raise ValueError(f"the comment is {len(answer.comment):,} characters: keep it under {MAX_COMMENT:,}")
    with write_transaction(db):
        if answer.repeat_of is not None:  # only as served (Item.repeat_of): an import or a script never makes a repeat
            return _store_repeat(db, answer)
        existing = db.execute(
            "SELECT id, returned FROM rankings WHERE item_id = ? AND annotator_id = ?", [answer.item_id, answer.annotator]
        ).fetchone()
        if existing and existing[1]:
            _replace_sent_back(db, existing[0])
        elif existing:
            return Submitted(existing[0], was_new=False)
        ranking_id = db.execute(
            """INSERT INTO rankings (item_id, annotator_id, skipped, groups, display_order, seconds, flags, comment, created_at,
                                     guideline_version)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [answer.item_id, answer.annotator, int(answer.groups is None), _groups_json(answer),
             to_json(answer.shown_order), answer.seconds, to_json(list(answer.flags)), answer.comment.strip(), now(),
             answer.guideline_version],
        ).lastrowid
        if answer.groups is not None:
            _store_comparisons(db, answer.item_id, ranking_id, answer.groups)
            db.execute("UPDATE items SET n_rankings = n_rankings + 1 WHERE id = ?", [answer.item_id])
        _end_reservation(db, answer)
    return Submitted(ranking_id, was_new=True)


def _store_repeat(db: Database, answer: Answer) -> Submitted:
    """A self-consistency repeat, kept apart from `rankings` (never a second vote) and compared with the first at once."""
    first = db.execute("SELECT groups FROM rankings WHERE id = ? AND item_id = ? AND annotator_id = ? AND skipped = 0",
                       [answer.repeat_of, answer.item_id, answer.annotator]).fetchone()
    if first is None:
        raise ValueError(f"ranking {answer.repeat_of} is not your ranking of item {answer.item_id}: "
                         "a repeat answers the item's repeat_of as next_item served it")
    existing = db.execute("SELECT id FROM repeat_rankings WHERE ranking_id = ?", [answer.repeat_of]).fetchone()
    if existing:
        return Submitted(existing[0], was_new=False)
    k = len(completions_of(db, answer.item_id))
    agree, disagree, tau = (0, 0, None) if answer.groups is None else self_agreement(from_json(first[0]), answer.groups, k)
    repeat_id = db.execute(
        """INSERT INTO repeat_rankings (ranking_id, item_id, annotator_id, skipped, groups, display_order, seconds, flags, comment,
                                        guideline_version, agree, disagree, tau_b, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [answer.repeat_of, answer.item_id, answer.annotator, int(answer.groups is None), _groups_json(answer),
         to_json(answer.shown_order), answer.seconds, to_json(list(answer.flags)), answer.comment.strip(),
         answer.guideline_version, agree, disagree, tau, now()]).lastrowid
    _end_reservation(db, answer)
    return Submitted(repeat_id, was_new=True)


def _replace_sent_back(db: Database, ranking_id: int) -> None:
    """The annotator answers an item a reviewer sent back to them (data.review): their rejected ranking makes way for
    the new answer (one ranking per person and item). The rejection already took it out of every statistic and of
    the item's count; the audit log keeps what it was, beside the review log's decision and reason."""
    old = next(iter(db.query("""SELECT r.id, r.item_id, r.skipped, r.groups, r.display_order, r.created_at, r.review_reason,
                                       r.reviewed_by, a.name AS annotator
                                FROM rankings r JOIN annotators a ON a.id = r.annotator_id WHERE r.id = ?""", [ranking_id])))
    audit.record(db, None, "ranking redone after a send back", f"ranking {ranking_id}",
                 {"item": old["item_id"], "was": "skipped" if old["skipped"] else from_json(old["groups"]),
                  "display_order": from_json(old["display_order"]), "made": old["created_at"],
                  "sent back by": old["reviewed_by"], "reason": old["review_reason"]}, by=old["annotator"])
    if not old["skipped"]:  # only rankings are counted by day
        quality.forget_day(db, ranking_id, old["created_at"][:10])
    delete_rows(db, ranking_id)


def delete_rows(db: Database, ranking_id: int) -> None:
    """A ranking's rows and its comparisons' (its statistics already told: data.undo, or a redo after a send back)."""
    db.execute("DELETE FROM comparisons WHERE ranking_id = ?", [ranking_id])
    db.execute("DELETE FROM stats_unreadable WHERE ranking_id = ?", [ranking_id])
    db.execute("DELETE FROM rankings WHERE id = ?", [ranking_id])


def _groups_json(answer: Answer) -> str | None:
    return None if answer.groups is None else to_json(answer.groups)


def _end_reservation(db: Database, answer: Answer) -> None:
    """The item the annotator held (data.queue) is answered: it is no longer theirs to hold."""
    db.execute("DELETE FROM reservations WHERE item_id = ? AND annotator_id = ?", [answer.item_id, answer.annotator])


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
