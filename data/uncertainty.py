"""The uncertainty-driven queue order: per prompt set, serve first the items the active reward model is least sure about.

Each item may carry an `uncertainty` in [0, 1] from a reward model version (`rm.uncertainty` computes and stores it:
1 when every pair of its completions is a coin flip to that model, 0 when it is sure of every pair). A set in the
'uncertain' order copies it into `items.priority`, which the queue sorts on after the number of rankings, so the
queue stays one index walk (`items_queue_priority`). A `random_share` of such a set's items is served at random
instead (annotation._fresh_item), so its rankings stay unbiased enough to evaluate a reward model on.
"""

from sqlite_utils import Database

from data.store import to_json, write_transaction

QUEUE_ORDERS = {
    "oldest": "Fewest rankings, then oldest first",
    "uncertain": "Fewest rankings, then least certain to the active reward model first",
}

# Open items: served to annotators, not gold, still short of their set's rankings.
_OPEN = """FROM items i JOIN prompts p ON p.id = i.prompt_id JOIN prompt_sets s ON s.name = p.prompt_set
           WHERE i.origin = 'sampled' AND i.n_rankings < s.rankings_wanted
             AND NOT EXISTS (SELECT 1 FROM gold g WHERE g.item_id = i.id)"""


def queue_settings(db: Database, prompt_set: str) -> dict:
    row = db.execute("SELECT queue_order, random_share FROM prompt_sets WHERE name = ?", [prompt_set]).fetchone()
    if row is None:
        raise ValueError(f"there is no prompt set {prompt_set!r}")
    return {"queue_order": row[0], "random_share": row[1]}


def set_queue_order(db: Database, prompt_set: str, order: str, random_share: float = 0.2) -> None:
    """Serve the set's items in this order ('oldest' or 'uncertain'), with `random_share` (0 to 1) of an
    'uncertain' set's items drawn at random instead."""
    if order not in QUEUE_ORDERS:
        raise ValueError(f"unknown queue order {order!r}: use one of {sorted(QUEUE_ORDERS)}")
    if not 0 <= random_share <= 1:
        raise ValueError(f"the random share is between 0% and 100% of the queue, got {random_share:.0%}")
    with write_transaction(db):
        if db.execute("UPDATE prompt_sets SET queue_order = ?, random_share = ? WHERE name = ?",
                      [order, random_share, prompt_set]).rowcount == 0:
            raise ValueError(f"there is no prompt set {prompt_set!r}")
        db.execute("""UPDATE items SET priority = CASE WHEN ? = 'uncertain' THEN COALESCE(uncertainty, 0) ELSE 0 END
                      WHERE prompt_id IN (SELECT id FROM prompts WHERE prompt_set = ?)""", [order, prompt_set])


def sets_in_uncertain_order(db: Database) -> list[str]:
    return [row[0] for row in db.execute("SELECT name FROM prompt_sets WHERE queue_order = 'uncertain' ORDER BY name")]


def items_to_score(db: Database, reward_version_id: int, prompt_sets: list[str] | None = None, rescore: bool = False) -> list[int]:
    """Open items of the sets in the 'uncertain' order (or of these sets) that this reward model has not scored yet
    (with `rescore`: all of them)."""
    sets = prompt_sets if prompt_sets is not None else sets_in_uncertain_order(db)
    return [row[0] for row in db.execute(
        f"""SELECT i.id {_OPEN} AND p.prompt_set IN (SELECT value FROM json_each(:sets))
            AND (:rescore OR i.uncertainty_version IS NOT :version) ORDER BY i.id""",
        {"sets": to_json(list(sets)), "version": reward_version_id, "rescore": int(rescore)})]


def completions_to_score(db: Database, item_ids: list[int]) -> list[tuple[int, str, str]]:
    """(item id, prompt text, completion text) for these items, each item's completions together in stored order."""
    return db.execute(
        """SELECT i.id, p.text, c.text FROM items i JOIN prompts p ON p.id = i.prompt_id JOIN completions c ON c.item_id = i.id
           WHERE i.id IN (SELECT value FROM json_each(?)) ORDER BY i.id, c.position""", [to_json(list(item_ids))]).fetchall()


def store_uncertainty(db: Database, reward_version_id: int, values: list[tuple[int, float]]) -> None:
    """Record (item id, uncertainty) from this reward model version; an 'uncertain' set's queue follows at once."""
    with write_transaction(db):
        db.conn.executemany(
            """UPDATE items SET uncertainty = :u, uncertainty_version = :v,
                   priority = CASE WHEN (SELECT s.queue_order FROM prompts p JOIN prompt_sets s ON s.name = p.prompt_set
                                         WHERE p.id = items.prompt_id) = 'uncertain' THEN :u ELSE 0 END
               WHERE id = :id""",
            [{"u": float(u), "v": reward_version_id, "id": item_id} for item_id, u in values])


def queue_overview(db: Database, reward_version_id: int | None) -> dict[str, dict]:
    """Per prompt set: its order, random share, open items, and how many of them this reward model has scored.
    One pass over the open items (an admin screen: tens of ms at 100k items)."""
    sets = {name: {"queue_order": order, "random_share": share, "open": 0, "scored": 0}
            for name, order, share in db.execute("SELECT name, queue_order, random_share FROM prompt_sets")}
    for name, open_, scored in db.execute(
            f"SELECT p.prompt_set, COUNT(*), COALESCE(SUM(i.uncertainty_version IS ?), 0) {_OPEN} GROUP BY p.prompt_set",
            [reward_version_id]):
        sets[name].update(open=open_, scored=scored)
    return sets

