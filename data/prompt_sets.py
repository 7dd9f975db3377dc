"""Prompt sets as projects: whether a set is served (status), before which others (priority), to whom (assigned
annotators; none: everyone), and its targets (N rankings per item, and a share of items that want more for agreement).

The queue (`data.queue.next_item`) serves only active sets, only to the annotators a set is assigned to, highest
priority first, then fewest rankings first. The built-in demo set is paused when the first other set gets items, so
a new project is not served after the demo (`pause_demo_if_first`). An item wants OVERLAP_WANTED rankings: the set's N,
or for the overlap share of its items (fixed in advance by each item's draw) the overlap N.

Every setting of a set is written through `update_settings`, which refuses a set that does not exist; the modules
that give a setting its meaning (gold's rate, the repeats, the queue order, N) check its value and call it.
"""

from sqlite_utils import Database

from data import audit
from data.accounts import User, require_admin
from data.store import write_transaction

STATUSES = ("active", "paused", "archived")
BUILTIN_SET = "builtin"
# How many rankings an item of set `s` wants (`i`: items): N, or for its overlap share, at least the overlap N. The
# share is picked by the golden-ratio sequence of item ids, frac(id * 0.618...): any run of consecutive ids (a set's
# items) spreads evenly over [0, 1), so a share s of n items gives s * n overlap items give or take 2 (for n up to
# 200; the error grows like log n), even for a small set (a random draw gave 0 of 6 at s = 0.5), and the sample has
# nothing to do with the items' content.
OVERLAP_POINT = "((i.id * 0.6180339887498949) - CAST(i.id * 0.6180339887498949 AS INTEGER))"
WANTED = f"""(CASE WHEN {OVERLAP_POINT} < s.overlap_share
                 THEN MAX(s.rankings_wanted, s.overlap_rankings) ELSE s.rankings_wanted END)"""
# Open items, as a FROM clause (items i, prompts p, prompt_sets s) to extend with AND: made to be ranked (sampled, not
# gold) and still short of the rankings their set wants. The annotator's queue narrows it (data.queue), the
# uncertainty scoring visits all of it (data.uncertainty).
OPEN_ITEMS = f"""FROM items i JOIN prompts p ON p.id = i.prompt_id JOIN prompt_sets s ON s.name = p.prompt_set
    WHERE i.origin = 'sampled' AND NOT EXISTS (SELECT 1 FROM gold g WHERE g.item_id = i.id) AND i.n_rankings < {WANTED}"""
# The sets :annotator may be served: active, and assigned to them or to nobody.
SERVED_TO = """s.status = 'active' AND (NOT EXISTS (SELECT 1 FROM set_assignments a WHERE a.prompt_set = s.name)
               OR EXISTS (SELECT 1 FROM set_assignments a WHERE a.prompt_set = s.name AND a.annotator_id = :annotator))"""


# Every setting of a set; all of them are written through `update_settings`.
SETTINGS = frozenset({"status", "priority", "rankings_wanted", "overlap_share", "overlap_rankings", "gold_every",
                      "repeat_share", "repeat_gap", "queue_order", "random_share"})


class UnknownSet(LookupError, ValueError):
    """A prompt set that does not exist. Also a ValueError, so a form that shows refused input shows this one too."""


def _unknown(db: Database, name: str) -> UnknownSet:
    known = ", ".join(r[0] for r in db.execute("SELECT name FROM prompt_sets ORDER BY created_at"))
    return UnknownSet(f"there is no prompt set named {name!r}: "
                      + (f"the sets are {known}" if known else "there are none yet, import prompts to make one"))


def get_set(db: Database, name: str) -> dict:
    row = next(iter(db.query("SELECT * FROM prompt_sets WHERE name = ?", [name])), None)
    if row is None:
        raise _unknown(db, name)
    return {**row, "assigned": assigned(db, name)}


def update_settings(db: Database, name: str, **settings) -> None:
    """Write these settings of the set (`gold_every=5`), checked by the caller, in one transaction or the caller's.
    An unknown set is refused (UnknownSet, naming the sets there are) rather than updating nothing."""
    assert settings and set(settings) <= SETTINGS, f"not prompt set settings: {sorted(set(settings) - SETTINGS)}"
    columns = ", ".join(f"{column} = ?" for column in settings)
    with write_transaction(db):
        if db.execute(f"UPDATE prompt_sets SET {columns} WHERE name = ?", [*settings.values(), name]).rowcount == 0:
            raise _unknown(db, name)


def assigned(db: Database, name: str) -> list[str]:
    return [r[0] for r in db.execute("""SELECT n.name FROM set_assignments a JOIN annotators n ON n.id = a.annotator_id
                                        WHERE a.prompt_set = ? ORDER BY n.name""", [name])]


def configure(db: Database, name: str, actor: User | None = None, status: str | None = None, priority: int | None = None,
              assign: list[str] | None = None, rankings_wanted: int | None = None, overlap_share: float | None = None,
              overlap_rankings: int | None = None, logged: dict | None = None, by: str = "") -> dict:
    """Change what is given of a set's settings, in one transaction; `assign`: the annotators it is served to ([]:
    everyone). Refuses an unknown set, status or annotator, and a target out of range, naming what to use instead.
    `logged`: settings the caller changed in the same transaction, for the same audit-log entry; `by`: the job
    changing them, for the audit log (no `actor`)."""
    with write_transaction(db):
        require_admin(db, actor)
        get_set(db, name)
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
            update_settings(db, name, status=status)
        if priority is not None:
            update_settings(db, name, priority=int(priority))
            db.execute("UPDATE items SET set_priority = ? WHERE prompt_id IN (SELECT id FROM prompts WHERE prompt_set = ?)",
                       [int(priority), name])
        if rankings_wanted is not None:
            if rankings_wanted < 1:
                raise ValueError(f"rankings wanted per item must be at least 1, got {rankings_wanted}")
            update_settings(db, name, rankings_wanted=rankings_wanted)
        if overlap_share is not None:
            if not 0 <= overlap_share <= 1:
                raise ValueError(f"the overlap share is a fraction of the items between 0 and 1, got {overlap_share}")
            update_settings(db, name, overlap_share=overlap_share)
        if overlap_rankings is not None:
            if overlap_rankings < 2:
                raise ValueError(f"overlap items need at least 2 rankings each (for agreement), got {overlap_rankings}")
            update_settings(db, name, overlap_rankings=overlap_rankings)
        if assign is not None:
            _assign(db, name, assign)
        audit.record(db, actor, "configure set", name, {"status": status, "priority": priority, "assigned": assign,
                                                         "rankings wanted": rankings_wanted, "overlap share": overlap_share,
                                                         "overlap rankings": overlap_rankings, **(logged or {})}, by=by)
    return get_set(db, name)


def _assign(db: Database, name: str, annotators: list[str]) -> None:
    ids = []
    for who in annotators:
        row = db.execute("SELECT id FROM annotators WHERE name = ?", [who.strip()]).fetchone()
        if row is None:
            raise ValueError(f"there is no annotator named {who.strip()!r}: create the account first (Team)")
        ids.append(row[0])
    db.execute("DELETE FROM set_assignments WHERE prompt_set = ?", [name])
    db.conn.executemany("INSERT OR IGNORE INTO set_assignments (prompt_set, annotator_id) VALUES (?, ?)",
                        [(name, i) for i in ids])


def pause_demo_if_first(db: Database, prompt_set: str, item_id: int) -> bool:
    """Pause the built-in demo set when `item_id` is the first item of any other set. Call inside add_item's
    transaction. True when it paused it."""
    if prompt_set == BUILTIN_SET:
        return False
    earlier = db.execute("""SELECT 1 FROM items i JOIN prompts p ON p.id = i.prompt_id
                            WHERE p.prompt_set != ? AND i.id != ? LIMIT 1""", [BUILTIN_SET, item_id]).fetchone()
    if earlier:
        return False
    paused = db.execute("UPDATE prompt_sets SET status = 'paused' WHERE name = ? AND status = 'active'",
                        [BUILTIN_SET]).rowcount > 0
    if paused:
        audit.record(db, None, "configure set", BUILTIN_SET, {"status": "paused", "why": f"{prompt_set} is the first set "
                     "of your own with items: the demo set would be served before it"}, by="the app")
    return paused


def delete_set(db: Database, name: str, actor: User | None = None) -> dict:
    """Delete a set nothing of which was ranked, skipped or written as a demonstration: its prompts, items and
    completions. A set with answers is archived instead (kept, served to no one)."""
    with write_transaction(db):
        require_admin(db, actor)
        get_set(db, name)
        (answered,) = db.execute("""SELECT (SELECT COUNT(*) FROM rankings r JOIN items i ON i.id = r.item_id
                                             JOIN prompts p ON p.id = i.prompt_id WHERE p.prompt_set = :s)
                                          + (SELECT COUNT(*) FROM demonstrations d JOIN prompts p ON p.id = d.prompt_id
                                             WHERE p.prompt_set = :s)""", {"s": name}).fetchone()
        if answered:
            raise ValueError(f"prompt set {name!r} has {answered:,} rankings or demonstrations: archive it instead "
                             "(it is then served to no one, and its data stays)")
        counts = {"items": _delete_items(db, [row[0] for row in db.execute(
            "SELECT i.id FROM items i JOIN prompts p ON p.id = i.prompt_id WHERE p.prompt_set = ?", [name])])}
        counts["prompts"] = db.execute("DELETE FROM prompts WHERE prompt_set = ?", [name]).rowcount
        db.execute("DELETE FROM guidelines WHERE prompt_set = ?", [name])
        db.execute("DELETE FROM prompt_sets WHERE name = ?", [name])
        audit.record(db, actor, "delete set", name, counts)
    return {"deleted": name, **counts}


def cut_answers(db: Database, name: str) -> dict:
    """The set's generated completions, how many were cut at their token cap, and how many unanswered items with a
    cut completion `withdraw_cut_items` would take out."""
    total, cut = db.execute("""SELECT COUNT(*), COALESCE(SUM(c.finish_reason = 'length'), 0) FROM completions c
                               JOIN items i ON i.id = c.item_id JOIN prompts p ON p.id = i.prompt_id
                               WHERE p.prompt_set = ? AND i.origin = 'sampled'""", [name]).fetchone()
    return {"completions": total, "cut": cut, "withdrawable": len(_cut_unanswered(db, name))}


def withdraw_cut_items(db: Database, name: str, actor: User | None = None) -> int:
    """Delete the set's items that have a completion cut at its token cap and no answer yet (no ranking or skip, no
    demonstration from them), so that the next generation (which skips prompts that have an item) samples their
    prompts again, under a higher cap. Returns how many items went."""
    with write_transaction(db):
        require_admin(db, actor)
        get_set(db, name)
        withdrawn = _delete_items(db, _cut_unanswered(db, name))
        audit.record(db, actor, "withdraw cut items", name, {"items": withdrawn})
        return withdrawn


def _cut_unanswered(db: Database, name: str) -> list[int]:
    return [row[0] for row in db.execute(
        """SELECT i.id FROM items i JOIN prompts p ON p.id = i.prompt_id
           WHERE p.prompt_set = ? AND i.origin = 'sampled'
             AND EXISTS (SELECT 1 FROM completions c WHERE c.item_id = i.id AND c.finish_reason = 'length')
             AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.item_id = i.id)
             AND NOT EXISTS (SELECT 1 FROM repeat_rankings r WHERE r.item_id = i.id)
             AND NOT EXISTS (SELECT 1 FROM demonstrations d JOIN completions c ON c.id = d.source_completion_id
                             WHERE c.item_id = i.id)""", [name])]


def _delete_items(db: Database, item_ids: list[int]) -> int:
    """Delete unanswered items with their completions and whatever holds them (reservations, gold, a pending recount)."""
    for item_id in item_ids:
        for table in ("reservations", "gold", "completions", "stats_dirty", "judgements"):
            db.execute(f"DELETE FROM {table} WHERE item_id = ?", [item_id])
        db.execute("DELETE FROM items WHERE id = ?", [item_id])
    return len(item_ids)


def progress(db: Database) -> list[dict]:
    """Per set: settings, items, the rankings its targets want and have, the team's pace over the last 7 days and an
    ETA at that pace. One grouped query over items (the pace from the rankings index on created_at)."""
    rows = list(db.query(f"""
        SELECT s.name, s.status, s.priority, s.rankings_wanted, s.overlap_share, s.overlap_rankings,
               COUNT(i.id) AS items, COALESCE(SUM(CASE WHEN i.id IS NOT NULL THEN {WANTED} END), 0) AS wanted,
               COALESCE(SUM(MIN(i.n_rankings, {WANTED})), 0) AS done,
               COALESCE(SUM(i.n_rankings >= {WANTED}), 0) AS complete,
               COALESCE(SUM(i.id IS NOT NULL AND {OVERLAP_POINT} < s.overlap_share), 0) AS overlap_items
        FROM prompt_sets s
        LEFT JOIN prompts p ON p.prompt_set = s.name
        LEFT JOIN items i ON i.prompt_id = p.id AND i.origin = 'sampled'
        GROUP BY s.name ORDER BY s.priority DESC, s.created_at"""))
    week = db.execute("""SELECT p.prompt_set, COUNT(*) FROM rankings r JOIN items i ON i.id = r.item_id
                         JOIN prompts p ON p.id = i.prompt_id
                         WHERE r.created_at >= strftime('%Y-%m-%dT%H:%M:%S', 'now', '-7 days') AND r.skipped = 0
                           AND i.origin = 'sampled' GROUP BY p.prompt_set""").fetchall()  # as `done` counts
    age_days = {name: max(1.0, min(7.0, days)) for name, days in db.execute(
        "SELECT name, julianday('now') - julianday(created_at) FROM prompt_sets")}  # a new set: its pace since it began
    pace = {name: n / age_days.get(name, 7.0) for name, n in week}
    for row in rows:
        row["assigned"] = assigned(db, row["name"])
        row["per_day"] = round(pace.get(row["name"], 0.0), 1)
        row["stuck_items"], stuck = unreachable(db, row["name"]) if row["wanted"] > row["done"] else (0, 0)
        left = row["wanted"] - row["done"] - stuck  # what the people who may rank the set can still give
        if left <= 0:
            row["eta_days"] = None if stuck else 0.0  # done, or nothing left that anybody can give: no ETA
        elif row["status"] != "active":
            row["eta_days"] = None  # not served: no pace to go on
        else:
            row["eta_days"] = round(left / row["per_day"], 1) if row["per_day"] else None
    return rows


def rounds(db: Database, name: str) -> list[dict]:
    """The set's items by the job that wrote them, oldest first: a generation round each (`job_id` None: imported or
    added otherwise), with who wrote its answers (read from its first item), how many items and rankings it has
    against what the set wants, and how many items are complete. One grouped query over the set's items."""
    rows = list(db.query(f"""
        SELECT i.job_id, MIN(i.id) AS first_item, MIN(i.created_at) AS started, COUNT(*) AS items,
               SUM(MIN(i.n_rankings, {WANTED})) AS done, SUM({WANTED}) AS wanted, SUM(i.n_rankings >= {WANTED}) AS complete
        FROM prompt_sets s JOIN prompts p ON p.prompt_set = s.name JOIN items i ON i.prompt_id = p.id AND i.origin = 'sampled'
        WHERE s.name = ? GROUP BY i.job_id ORDER BY started, i.job_id""", [name]))
    for row in rows:
        row["writers"] = [writer for (writer,) in db.execute(
            """SELECT DISTINCT COALESCE(v.name, c.model_name, 'imported') FROM completions c
               LEFT JOIN model_versions v ON v.id = c.generator_version_id WHERE c.item_id = ? ORDER BY 1""",
            [row.pop("first_item")])]
    return rows


def served_people(db: Database, name: str) -> list[int]:
    """The ids of the enabled accounts the set is served to (its assigned annotators, or everyone)."""
    return [row[0] for row in db.execute(
        """SELECT n.id FROM annotators n WHERE n.disabled = 0 AND n.origin = 'account'
           AND (NOT EXISTS (SELECT 1 FROM set_assignments a WHERE a.prompt_set = ?)
                OR n.id IN (SELECT annotator_id FROM set_assignments a WHERE a.prompt_set = ?))""", [name, name])]


def unreachable(db: Database, name: str) -> tuple[int, int]:
    """(items, rankings) of the set still wanted that nobody can give: every enabled account the set is served to
    (its assigned annotators, or everyone) has ranked, skipped or been sent back from those items already (a ranking
    sent back to its own annotator to redo leaves the item reachable). One lookup per open item on the rankings'
    (item, annotator) key."""
    people = served_people(db, name)
    answered = (f"(SELECT COUNT(*) FROM rankings r WHERE r.item_id = i.id AND r.returned = 0 AND r.annotator_id IN ({', '.join('?' * len(people))}))"
                if people else "0")
    items, rankings = db.execute(
        f"""SELECT COUNT(*), COALESCE(SUM({WANTED} - i.n_rankings), 0) {OPEN_ITEMS} AND s.name = ? AND {answered} >= ?""",
        [name, *people, len(people)]).fetchone()
    return items, rankings
