"""The annotation queue and the submission of rankings."""

import datetime
import random
from dataclasses import dataclass, field

from sqlite_utils import Database

from data import gold
from data.conversation import as_messages
from data.rankings import ranking_to_pairs, validate_ranking
from data.store import from_json, now, to_json, write_transaction

FLAGS = ("all are bad", "offensive/unsafe", "prompt unclear")
RESERVATION_S = 600  # how long an item shown to an annotator is held for them


@dataclass
class Completion:
    id: int
    position: int
    text: str


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


@dataclass(frozen=True)
class Guideline:
    version: int
    text: str  # Markdown


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


# Items this annotator has neither ranked nor skipped, whose prompt set still wants rankings
# once the rankings in progress elsewhere (live reservations of other annotators) are counted.
_OPEN_ITEMS = """
    FROM items i
    JOIN prompts p ON p.id = i.prompt_id
    JOIN prompt_sets s ON s.name = p.prompt_set
    WHERE i.origin = 'sampled' AND NOT EXISTS (SELECT 1 FROM gold g WHERE g.item_id = i.id)
      AND i.n_rankings + (SELECT COUNT(*) FROM reservations v
                          WHERE v.item_id = i.id AND v.annotator_id != :annotator AND v.expires_at > :now) < s.rankings_wanted
      AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = i.id AND r.annotator_id = :annotator)
"""


def next_item(db: Database, annotator: int) -> Item | None:
    """The item to show this annotator, reserved for them: the one they already hold, else the open
    item with the fewest rankings (oldest first among equals). None when nothing is left."""
    now_ = now()
    with write_transaction(db):
        db.execute("DELETE FROM reservations WHERE expires_at <= ?", [now_])
        held = db.execute(
            """SELECT v.item_id FROM reservations v WHERE v.annotator_id = :annotator AND v.expires_at > :now
               AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = v.item_id AND r.annotator_id = :annotator)
               ORDER BY v.item_id LIMIT 1""", {"annotator": annotator, "now": now_}).fetchone()
        row = held
        if row is None:
            gold_item = gold.gold_item_due(db, annotator)  # gold goes to everyone, at its set's rate
            row = (gold_item,) if gold_item else db.execute(
                f"SELECT i.id {_OPEN_ITEMS} ORDER BY i.n_rankings, i.id LIMIT 1", {"annotator": annotator, "now": now_}).fetchone()
        if row is None:
            return None
        expires = (datetime.datetime.fromisoformat(now_) + datetime.timedelta(seconds=RESERVATION_S)).isoformat(timespec="milliseconds")
        db.execute("INSERT OR REPLACE INTO reservations (item_id, annotator_id, expires_at) VALUES (?, ?, ?)",
                   [row[0], annotator, expires])
    return get_item(db, row[0])


def completions_of(db: Database, item_id: int) -> list[Completion]:
    rows = db.execute(
        "SELECT id, position, text FROM completions WHERE item_id = ? ORDER BY position", [item_id]
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
    return db.execute("SELECT COUNT(*) FROM rankings WHERE annotator_id = ? AND skipped = 0", [annotator]).fetchone()[0]


def items_left(db: Database, annotator: int) -> int:
    """How many items this annotator could still be served. It visits every open item: at 100k items, call it sparingly."""
    return db.execute(f"SELECT COUNT(*) {_OPEN_ITEMS}", {"annotator": annotator, "now": now()}).fetchone()[0]


def display_order(item_id: int, annotator: int, k: int) -> list[int]:
    """The order this annotator sees the completions in: shuffled, but stable across reloads."""
    order = list(range(k))
    random.Random(f"{annotator}:{item_id}").shuffle(order)
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
) -> Submitted:
    """Store a ranking and the comparisons it implies, in one transaction.

    A second submission of the same item by the same annotator stores nothing and
    returns the first one (a double click or a resubmitted form).
    """
    k = len(completions_of(db, item_id))
    groups = validate_ranking(groups, k)
    return _store(db, item_id, annotator, groups, shown_order, seconds, flags, comment)


def skip_item(db: Database, item_id: int, annotator: int, shown_order: list[int], seconds=None, flags=(), comment="") -> Submitted:
    """Record that this annotator skipped the item, so it leaves their queue."""
    return _store(db, item_id, annotator, None, shown_order, seconds, flags, comment)


def _store(db, item_id, annotator, groups, shown_order, seconds, flags, comment) -> Submitted:
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise ValueError(f"unknown flags {unknown}: use {list(FLAGS)}")
    with write_transaction(db):
        existing = db.execute(
            "SELECT id FROM rankings WHERE item_id = ? AND annotator_id = ?", [item_id, annotator]
        ).fetchone()
        if existing:
            return Submitted(existing[0], was_new=False)
        ranking_id = db.execute(
            """INSERT INTO rankings (item_id, annotator_id, skipped, groups, display_order, seconds, flags, comment, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [item_id, annotator, int(groups is None), None if groups is None else to_json(groups),
             to_json(list(shown_order)), seconds, to_json(list(flags)), comment.strip(), now()],
        ).lastrowid
        if groups is not None:
            _store_comparisons(db, item_id, ranking_id, groups)
            db.execute("UPDATE items SET n_rankings = n_rankings + 1 WHERE id = ?", [item_id])
        db.execute("DELETE FROM reservations WHERE item_id = ? AND annotator_id = ?", [item_id, annotator])
    return Submitted(ranking_id, was_new=True)


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
