"""The audit log: who did what as an admin (or from the command line), when, to what. Shown on Operate → Team.

Each admin action writes its entry inside the same write transaction as the change, after the actor is re-checked,
so an entry exists exactly when the change does. Reviews (`review_events`, with the reason) and model versions made
active, rolled back or deleted (`model_version_events`) keep their own trails and are read from there, not written
twice.
"""

import json

from sqlite_utils import Database

from data.store import now, write_transaction

CLI = "command line"  # the actor of a change made with `python -m data` or a job started from a terminal


def record(db: Database, actor, action: str, target: str = "", detail: dict | None = None, by: str = "") -> None:
    """One entry: call inside the change's write transaction. `actor`: the admin's User, or None: `by` (a job: "job
    12"), else the command line."""
    db.execute("INSERT INTO audit_log (at, actor_id, actor, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
               [now(), getattr(actor, "id", None), getattr(actor, "name", by or CLI), action, str(target)[:200],
                json.dumps(detail or {}, default=str)[:2000]])


def record_alone(db: Database, actor, action: str, target: str = "", detail: dict | None = None) -> None:
    """An entry for an action that changes nothing in the store (a download), in a transaction of its own."""
    with write_transaction(db):
        record(db, actor, action, target, detail)


def recent(db: Database, limit: int = 200, actor: str | None = None) -> list[dict]:
    """The newest entries first, reviews included; `actor`: only one person's."""
    who = "WHERE {} = :actor" if actor else ""
    newest = "ORDER BY at DESC, id DESC LIMIT :limit"  # each trail read newest first by its index on (at): no full scan
    rows = db.execute(
        f"""SELECT at, actor, action, target, detail FROM (
                SELECT * FROM (SELECT at, id, actor, action, target, detail FROM audit_log {who.format("actor")} {newest})
                UNION ALL
                SELECT * FROM (SELECT at, id, by, 'review: ' || action, 'ranking ' || ranking_id,
                                      json_object('reason', reason) FROM review_events {who.format("by")} {newest})
                UNION ALL
                SELECT * FROM (SELECT at, id, by, 'model version ' || action, kind || ' ' || name, json_object('note', note)
                               FROM model_version_events {who.format("by")} {newest}))
            {newest}""",
        {"actor": actor, "limit": int(limit)}).fetchall()
    return [{"at": at, "who": who, "action": action, "target": target, "detail": _detail(detail)}
            for at, who, action, target, detail in rows]


def _detail(text: str | None) -> str:
    values = json.loads(text or "{}")
    return ", ".join(f"{k}: {v}" for k, v in values.items() if v not in (None, "", [], {}))
