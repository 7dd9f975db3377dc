"""An annotator's second thoughts. Undo: their last ranking or skip, within UNDO_WINDOW_S, is deleted and its item
returns to them as their current one. Edit: one of their recent rankings gets a new order (My rankings), until it has
been reviewed. The derived statistics (quality tables, leaderboard counts, the item's N) stay equal to a recount:
each is told before a ranking goes (`quality.take_back`, `leaderboard.take_back`), and an edited ranking is stored
again under a new id, which the next refresh reads like any new one."""

import datetime

from sqlite_utils import Database

from data import leaderboard, quality
from data.annotation import completions_of, delete_rows, submit_ranking
from data.queue import RESERVATION_S
from data.rankings import validate_ranking
from data.store import from_json, now, write_transaction

UNDO_WINDOW_S = 600
MY_RANKINGS = 30  # how many of their newest rankings an annotator sees (and may still edit) under My rankings


def undoable(db: Database, annotator: int) -> dict | None:
    """This annotator's newest ranking or skip if it can still be taken back: made in the last UNDO_WINDOW_S, not
    asked again as a self-consistency repeat, not reviewed yet, and not the source of a demonstration."""
    cutoff = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=UNDO_WINDOW_S)).isoformat(timespec="milliseconds")
    row = next(iter(db.query(
        """SELECT r.id, r.item_id, r.skipped, r.groups, r.display_order, r.created_at, r.review, i.origin
           FROM rankings r JOIN items i ON i.id = r.item_id
           WHERE r.annotator_id = ? ORDER BY r.created_at DESC, r.id DESC LIMIT 1""", [annotator])), None)  # index walk
    if row is None or row["created_at"] < cutoff or row["review"]:  # a reviewed ranking stays as it was judged
        return None
    return None if linked_elsewhere(db, row["id"]) else row


def linked_elsewhere(db: Database, ranking_id: int) -> bool:
    """Asked again as a self-consistency repeat (the repeat was compared with it) or the source of a demonstration:
    such a ranking is neither undone, edited nor redone after a send back (data.review)."""
    return db.execute("""SELECT (SELECT COUNT(*) FROM repeat_rankings WHERE ranking_id = :id)
                              + (SELECT COUNT(*) FROM demonstrations WHERE implicit_ranking_id = :id)""",
                      {"id": ranking_id}).fetchone()[0] > 0


def undo_last(db: Database, annotator: int) -> int:
    """Delete this annotator's last submission and hold its item for them again; returns the item id."""
    with write_transaction(db):
        row = undoable(db, annotator)
        if row is None:
            raise ValueError(f"nothing to undo: only your last ranking or skip of the last {UNDO_WINDOW_S // 60} minutes "
                             "can be taken back")
        _delete(db, row)
        db.execute("DELETE FROM reservations WHERE annotator_id = ?", [annotator])  # the item shown meanwhile waits
        expires = (datetime.datetime.fromisoformat(now()) + datetime.timedelta(seconds=RESERVATION_S)).isoformat(timespec="milliseconds")
        db.execute("INSERT OR REPLACE INTO reservations (item_id, annotator_id, expires_at, repeat_of) VALUES (?, ?, ?, NULL)",
                   [row["item_id"], annotator, expires])
    return row["item_id"]


# A ranking's last review decision (accept, reject, send back), through review_events' (ranking_id, id) index.
LAST_REVIEW_ACTION = "(SELECT e.action FROM review_events e WHERE e.ranking_id = r.id ORDER BY e.id DESC LIMIT 1)"


def my_rankings(db: Database, annotator: int, limit: int = MY_RANKINGS) -> list[dict]:
    """This annotator's newest rankings and skips, with what they were shown (prompt, display order) and whether
    each can still be edited (a ranking, not reviewed, not repeated, not a demonstration's source)."""
    rows = db.query(
        f"""SELECT r.id, r.item_id, r.skipped, r.groups, r.display_order, r.created_at, r.edited_at, r.review,
                  r.review_reason, r.returned, r.flags, r.comment, p.prompt_set, substr(p.text, 1, 160) AS prompt,
                  {LAST_REVIEW_ACTION} AS review_action,
                  (SELECT COUNT(*) FROM completions c WHERE c.item_id = r.item_id) AS k
           FROM rankings r JOIN items i ON i.id = r.item_id JOIN prompts p ON p.id = i.prompt_id
           WHERE r.annotator_id = ? ORDER BY r.created_at DESC, r.id DESC LIMIT ?""", [annotator, limit])
    out = []
    for row in rows:
        row = {**row, "groups": from_json(row["groups"]), "display_order": from_json(row["display_order"]),
               "flags": from_json(row["flags"])}
        row["editable"] = not row["skipped"] and not row["review"] and not linked_elsewhere(db, row["id"])
        out.append(row)
    return out


def edit_ranking(db: Database, annotator: int, ranking_id: int, groups: list[list[int]]) -> int:
    """Give one of this annotator's own rankings a new order (`groups` of stored positions), keeping its flags,
    comment, timing and guideline version. Returns the ranking's new id."""
    with write_transaction(db):
        row = next(iter(db.query(
            """SELECT r.*, i.origin FROM rankings r JOIN items i ON i.id = r.item_id
               WHERE r.id = ? AND r.annotator_id = ?""", [ranking_id, annotator])), None)
        if row is None:
            raise LookupError(f"ranking {ranking_id} is not one of yours")
        if row["skipped"] or row["review"] or linked_elsewhere(db, ranking_id):
            raise ValueError("this ranking can no longer be changed: " + (
                "it was a skip" if row["skipped"] else f"it was reviewed ({row['review']})" if row["review"]
                else "it was asked again or a demonstration was made from it"))
        groups = validate_ranking(groups, len(completions_of(db, row["item_id"])))
        if groups == from_json(row["groups"]):
            return ranking_id
        _delete(db, row)
        new_id = submit_ranking(db, row["item_id"], annotator, groups, from_json(row["display_order"]), row["seconds"],
                                from_json(row["flags"]), row["comment"], row["guideline_version"]).ranking_id
        db.execute("UPDATE rankings SET created_at = ?, edited_at = ? WHERE id = ?", [row["created_at"], now(), new_id])
    return new_id


def _delete(db: Database, row: dict) -> None:
    """Delete one ranking or skip (`row`: id, item_id, skipped, groups, created_at, origin), every statistic told first."""
    if not row["skipped"]:
        quality.take_back(db, row["id"], row["item_id"], row["created_at"][:10], row["origin"] == "sampled")
        if row["origin"] == "sampled":
            leaderboard.take_back(db, row["id"], row["item_id"], row["groups"])
        db.execute("UPDATE items SET n_rankings = n_rankings - 1 WHERE id = ?", [row["item_id"]])
    delete_rows(db, row["id"])
