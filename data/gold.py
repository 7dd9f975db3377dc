"""Gold items: an admin's expected order for an item, mixed into annotators' queues and graded silently."""

from sqlite_utils import Database

from data import quality
from data.prompt_sets import update_settings
from data.rankings import groups_to_text, passes_gold, ranking_to_pairs
from data.store import from_json, now, to_json, to_the_minute, write_transaction


def set_gold(db: Database, item_id: int, expected: list[list[int]]) -> None:
    """Mark an item as gold with its expected order: groups of positions, best first, covering all
    completions or only some (a pair with an expected winner is [[winner], [loser]])."""
    if not ranking_to_pairs(expected):
        raise ValueError("a gold answer must order at least one pair, e.g. A > B")
    positions = [p for group in expected for p in group]
    if len(positions) != len(set(positions)) or any(not group for group in expected):
        raise ValueError("a gold answer names each completion at most once (A > A or A > B > A could never be passed)")
    with write_transaction(db):
        k = db.execute("SELECT COUNT(*) FROM completions WHERE item_id = ?", [item_id]).fetchone()[0]
        if not k or not all(isinstance(p, int) and 0 <= p < k for p in positions):
            raise ValueError(f"item {item_id} has {k} completions: a gold answer orders only those")
        db.execute("INSERT OR REPLACE INTO gold (item_id, expected, created_at) VALUES (?, ?, ?)", [item_id, to_json(expected), now()])
        quality.mark_dirty(db, item_id)  # its rankings are graded anew


def set_gold_every(db: Database, prompt_set: str, every: int) -> None:
    """Serve a gold item every `every` items (0: never)."""
    if every < 0:
        raise ValueError("the gold rate is every N items, N >= 0")
    update_settings(db, prompt_set, gold_every=every)


def gold_results(db: Database) -> list[dict]:
    """Every ranking of a gold item, graded."""
    rows = db.query("""SELECT r.id AS ranking_id, a.name AS annotator, r.item_id, r.groups, g.expected
                       FROM rankings r JOIN gold g ON g.item_id = r.item_id JOIN annotators a ON a.id = r.annotator_id
                       WHERE r.skipped = 0 ORDER BY r.id""")
    return [{"ranking_id": r["ranking_id"], "annotator": r["annotator"], "item_id": r["item_id"],
             "passed": passes_gold(from_json(r["expected"]), from_json(r["groups"]))} for r in rows]


def gold_items(db: Database, prompt_set: str) -> list[dict]:
    """A set's gold items, newest first: the item, its prompt's start, the expected order (letters in stored order, as
    the Gold screen lists the completions), and how many of its rankings passed."""
    rows = list(db.query("""SELECT g.item_id, substr(p.text, 1, 120) AS prompt, g.expected, g.created_at
                            FROM gold g JOIN items i ON i.id = g.item_id JOIN prompts p ON p.id = i.prompt_id
                            WHERE p.prompt_set = ? ORDER BY g.created_at DESC, g.item_id DESC""", [prompt_set]))
    graded: dict[int, list[bool]] = {row["item_id"]: [] for row in rows}
    for result in gold_results(db):
        graded.get(result["item_id"], []).append(result["passed"])
    return [{"item": row["item_id"], "prompt": row["prompt"], "expected": groups_to_text(from_json(row["expected"])),
             "rankings": len(graded[row["item_id"]]), "passed": sum(graded[row["item_id"]]),
             "marked": to_the_minute(row["created_at"])} for row in rows]


def accuracy_by_annotator(db: Database) -> dict[str, float]:
    results: dict[str, list[bool]] = {}
    for r in gold_results(db):
        results.setdefault(r["annotator"], []).append(r["passed"])
    return {name: sum(passed) / len(passed) for name, passed in results.items()}


def summary(db: Database) -> tuple[int, int]:
    """(gold rankings graded, of which passed), from the statistics kept in the store."""
    quality.refresh(db)
    graded, passed = db.execute("SELECT TOTAL(gold_rankings), TOTAL(gold_passed) FROM annotator_stats").fetchone()
    return int(graded), int(passed)
