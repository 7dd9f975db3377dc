"""The uncertainty-driven queue order: per prompt set, serve first the items the active reward model is least sure about.

Each item may carry an `uncertainty` in [0, 1] from the active reward model (`rm.uncertainty` computes it: 1 when
every pair of its completions is a coin flip to that model, 0 when it is sure of every pair). The queue sorts the
open items by their set's priority, their number of rankings, then by `items.priority`, highest first: one walk of the index
`items_queue_set`. In a set in the 'uncertain' order, an item's priority is its uncertainty (0 until scored),
except for the set's random share: the items whose fixed uniform `draw` (set once, at insert) is below
`random_share` get draw / random_share, a uniform number that has nothing to do with their content. Those items
are served interleaved with the others, and the ones ranked so far are a uniform sample of the set, whatever the
reward model thought. In an 'oldest' set every priority is 0 (oldest first, as before).
"""

from sqlite_utils import Database

from data import jobs, versions
from data.prompt_sets import OPEN_ITEMS, get_set, update_settings
from data.store import db_file, to_json, write_transaction

QUEUE_ORDERS = {  # among items with as many rankings
    "oldest": "Oldest first",
    "uncertain": "Least certain first (active reward model)",
}



def set_priorities(db: Database, where: str, params) -> None:
    """Recompute `items.priority` for the items matching `where` (SQL on `items`), from their set's order and share."""
    db.execute(f"""
        UPDATE items SET priority = (
            SELECT CASE WHEN s.queue_order != 'uncertain' THEN 0
                        WHEN items.draw < s.random_share THEN items.draw / s.random_share  -- the random share
                        ELSE COALESCE(items.uncertainty, 0) END
            FROM prompts p JOIN prompt_sets s ON s.name = p.prompt_set WHERE p.id = items.prompt_id)
        WHERE {where}""", params)


def queue_settings(db: Database, prompt_set: str) -> dict:
    settings = get_set(db, prompt_set)
    return {"queue_order": settings["queue_order"], "random_share": settings["random_share"]}


def set_queue_order(db: Database, prompt_set: str, order: str, random_share: float = 0.2) -> None:
    """Serve the set's items in this order ('oldest' or 'uncertain'); in an 'uncertain' set, `random_share` (0 to 1)
    of its items are served in random order instead. Unchanged settings rewrite nothing."""
    if order not in QUEUE_ORDERS:
        raise ValueError(f"unknown queue order {order!r}: use one of {sorted(QUEUE_ORDERS)}")
    if not 0 <= random_share <= 1:
        raise ValueError(f"the random share is between 0% and 100% of the queue, got {random_share:.0%}")
    with write_transaction(db):
        if queue_settings(db, prompt_set) == {"queue_order": order, "random_share": random_share}:
            return
        update_settings(db, prompt_set, queue_order=order, random_share=random_share)
        set_priorities(db, "prompt_id IN (SELECT id FROM prompts WHERE prompt_set = ?)", [prompt_set])


def sets_in_uncertain_order(db: Database) -> list[str]:
    return [row[0] for row in db.execute("SELECT name FROM prompt_sets WHERE queue_order = 'uncertain' ORDER BY name")]


def items_to_score(db: Database, reward_version_id: int, prompt_sets: list[str] | None = None, rescore: bool = False) -> list[int]:
    """Open items of the sets in the 'uncertain' order (or of these sets) that this reward model has not scored yet
    (with `rescore`: all of them)."""
    sets = prompt_sets if prompt_sets is not None else sets_in_uncertain_order(db)
    return [row[0] for row in db.execute(
        f"""SELECT i.id {OPEN_ITEMS} AND p.prompt_set IN (SELECT value FROM json_each(:sets))
            AND (:rescore OR i.uncertainty_version IS NOT :version) ORDER BY i.id""",
        {"sets": to_json(list(sets)), "version": reward_version_id, "rescore": int(rescore)})]


def completions_to_score(db: Database, item_ids: list[int]) -> list[tuple[int, str, str]]:
    """(item id, prompt text, completion text) for these items, each item's completions together in stored order."""
    return db.execute(
        """SELECT i.id, p.text, c.text FROM items i JOIN prompts p ON p.id = i.prompt_id JOIN completions c ON c.item_id = i.id
           WHERE i.id IN (SELECT value FROM json_each(?)) ORDER BY i.id, c.position""", [to_json(list(item_ids))]).fetchall()


def store_uncertainty(db: Database, reward_version_id: int, values: list[tuple[int, float]]) -> int:
    """Record (item id, uncertainty) from this reward model version, and the queue follows at once. Only the active
    reward model's scores are written (a model made inactive meanwhile writes nothing). Returns the items written."""
    with write_transaction(db):
        if not db.execute("SELECT 1 FROM model_versions WHERE id = ? AND kind = 'reward' AND is_active = 1",
                          [reward_version_id]).fetchone():
            return 0
        db.conn.executemany("UPDATE items SET uncertainty = ?, uncertainty_version = ? WHERE id = ?",
                            [(float(u), reward_version_id, item_id) for item_id, u in values])
        set_priorities(db, "id IN (SELECT value FROM json_each(?))", [to_json([item_id for item_id, _ in values])])
    return len(values)


def score_in_background(db: Database, prompt_sets: list[str] | None = None) -> int | None:
    """Start a `score_queue` job when the active reward model has open items left to score in the sets in the
    'uncertain' order (or in those of these sets). Returns its id, or None when there is nothing to score."""
    active = versions.active_version(db, "reward")
    sets = [s for s in sets_in_uncertain_order(db) if prompt_sets is None or s in prompt_sets]
    if active is None or not sets or not items_to_score(db, active["id"], sets):
        return None
    return jobs.start_job(db_file(db), "score_queue", {"prompt_sets": ",".join(sets)})


def queue_overview(db: Database, reward_version_id: int | None) -> dict[str, dict]:
    """Per prompt set: its order, random share, open items, and how many of them this reward model has scored.
    One pass over the open items (an admin screen: ~0.1 s at 100k open items)."""
    sets = {name: {"queue_order": order, "random_share": share, "open": 0, "scored": 0}
            for name, order, share in db.execute("SELECT name, queue_order, random_share FROM prompt_sets")}
    for name, open_, scored in db.execute(
            f"SELECT p.prompt_set, COUNT(*), COALESCE(SUM(i.uncertainty_version = ?), 0) {OPEN_ITEMS} GROUP BY p.prompt_set",
            [reward_version_id]):
        sets[name].update(open=open_, scored=scored)
    return sets
