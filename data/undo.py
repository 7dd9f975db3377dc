"""Taking back a submission: an annotator's last ranking or skip, within UNDO_WINDOW_S, is deleted and its item
returns to them as their current one. The derived statistics (quality tables, leaderboard counts, the item's N)
stay equal to a recount: each is told before the ranking goes (`quality.take_back`, `leaderboard.take_back`)."""

import datetime

from sqlite_utils import Database

from data import leaderboard, quality
from data.annotation import RESERVATION_S
from data.store import now, write_transaction

UNDO_WINDOW_S = 600


def undoable(db: Database, annotator: int) -> dict | None:
    """This annotator's newest ranking or skip if it can still be taken back: made in the last UNDO_WINDOW_S, not
    asked again as a self-consistency repeat, not reviewed yet, and not the source of a demonstration."""
    cutoff = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=UNDO_WINDOW_S)).isoformat(timespec="milliseconds")
    row = next(iter(db.query(
        """SELECT r.id, r.item_id, r.skipped, r.groups, r.created_at, r.review, i.origin FROM rankings r JOIN items i ON i.id = r.item_id
           WHERE r.annotator_id = ? ORDER BY r.created_at DESC, r.id DESC LIMIT 1""", [annotator])), None)  # index walk
    if row is None or row["created_at"] < cutoff or row["review"]:  # a reviewed ranking stays as it was judged
        return None
    blocked = db.execute("""SELECT (SELECT COUNT(*) FROM repeat_rankings WHERE ranking_id = :id)
                                 + (SELECT COUNT(*) FROM demonstrations WHERE implicit_ranking_id = :id)""", {"id": row["id"]}).fetchone()[0]
    return None if blocked else row


def undo_last(db: Database, annotator: int) -> int:
    """Delete this annotator's last submission and hold its item for them again; returns the item id."""
    with write_transaction(db):
        row = undoable(db, annotator)
        if row is None:
            raise ValueError(f"nothing to undo: only your last ranking or skip of the last {UNDO_WINDOW_S // 60} minutes "
                             "can be taken back")
        if not row["skipped"]:
            quality.take_back(db, row["id"], row["item_id"], row["created_at"][:10], row["origin"] == "sampled")
            if row["origin"] == "sampled":
                leaderboard.take_back(db, row["id"], row["item_id"], row["groups"])
            db.execute("UPDATE items SET n_rankings = n_rankings - 1 WHERE id = ?", [row["item_id"]])
        db.execute("DELETE FROM comparisons WHERE ranking_id = ?", [row["id"]])
        db.execute("DELETE FROM stats_unreadable WHERE ranking_id = ?", [row["id"]])
        db.execute("DELETE FROM rankings WHERE id = ?", [row["id"]])
        db.execute("DELETE FROM reservations WHERE annotator_id = ?", [annotator])  # the item shown meanwhile waits
        expires = (datetime.datetime.fromisoformat(now()) + datetime.timedelta(seconds=RESERVATION_S)).isoformat(timespec="milliseconds")
        db.execute("INSERT OR REPLACE INTO reservations (item_id, annotator_id, expires_at, repeat_of) VALUES (?, ?, ?, NULL)",
                   [row["item_id"], annotator, expires])
    return row["item_id"]
