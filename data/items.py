"""Prompts, prompt sets and items (one prompt with the K completions an annotator ranks)."""

from dataclasses import dataclass, field

from sqlite_utils import Database

from data import conversation, uncertainty
from data.content import content_hash
from data.prompt_sets import BUILTIN_SET, configure, pause_demo_if_first, update_settings
from data.rankings import MAX_K, MIN_K, RankingError
from data.store import now, to_json, write_transaction


@dataclass
class NewCompletion:
    """A completion to store; everything but the text is optional provenance."""

    text: str
    generator_version_id: int | None = None
    model_name: str | None = None
    params: dict = field(default_factory=dict)
    seed: int | None = None
    n_tokens: int | None = None
    finish_reason: str | None = None
    gen_seconds: float | None = None


def ensure_prompt_set(db: Database, name: str, rankings_wanted: int = 1) -> None:
    db.execute(
        "INSERT OR IGNORE INTO prompt_sets (name, rankings_wanted, created_at) VALUES (?, ?, ?)",
        [name, rankings_wanted, now()],
    )


def set_rankings_wanted(db: Database, prompt_set: str, n: int) -> None:
    """N: how many rankings each item of the set needs before it leaves every queue."""
    if n < 1:
        raise ValueError(f"rankings wanted per item must be at least 1, got {n}")
    update_settings(db, prompt_set, rankings_wanted=n)


def set_queue(db: Database, prompt_set: str, rankings_wanted: int, order: str, random_share: float) -> None:
    """The set's N and queue order (`uncertainty.set_queue_order`), in one transaction."""
    with write_transaction(db):
        set_rankings_wanted(db, prompt_set, rankings_wanted)
        uncertainty.set_queue_order(db, prompt_set, order, random_share)


def configure_set(db: Database, name: str, actor, project: dict, rankings_wanted: int, order: str, random_share: float) -> None:
    """A set's project settings (`prompt_sets.configure`), N and queue order (`set_queue`), in one transaction."""
    with write_transaction(db):
        set_queue(db, name, rankings_wanted, order, random_share)
        configure(db, name, actor=actor, **{**project, "rankings_wanted": rankings_wanted},
                  logged={"queue order": order, "random share": random_share})


def prompt_sets(db: Database) -> list[dict]:
    """Every set, those served first (active, then by priority, then the newest), so a form's default is the set being
    worked on: a new project comes before the demo set from its import on, and keeps its place when the demo pauses."""
    return list(
        db.query(
            """SELECT s.name, s.rankings_wanted, s.gold_every, COUNT(p.id) AS prompts
               FROM prompt_sets s LEFT JOIN prompts p ON p.prompt_set = s.name
               GROUP BY s.name ORDER BY s.status = 'active' DESC, s.status = 'paused' DESC, s.priority DESC, s.created_at DESC, s.rowid DESC"""
        )
    )


def add_prompt(db: Database, prompt_set: str, prompt: str | list[dict], source: str | None = None,
               tags=()) -> tuple[int, bool]:
    """Insert a prompt, text or messages, unless the set already has it. Returns (id, was_new).

    A conversation is stored as its messages beside its transcript in `text`; a single user turn
    is stored as plain text, exactly as a text prompt (messages NULL).
    """
    messages = None
    if not isinstance(prompt, str):
        messages = conversation.validate_messages(prompt)
        prompt = conversation.transcript(messages)
    row = db.execute("SELECT id FROM prompts WHERE prompt_set = ? AND text = ?", [prompt_set, prompt]).fetchone()
    if row:
        return row[0], False
    cursor = db.execute(
        "INSERT INTO prompts (prompt_set, text, messages, source, tags, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [prompt_set, prompt, to_json(messages) if messages and conversation.is_conversation(messages) else None,
         source, to_json(list(tags)), now()],
    )
    return cursor.lastrowid, True


def add_item(db: Database, prompt_id: int, completions: list[NewCompletion], job_id: int | None = None,
             origin: str = "sampled") -> int:
    """Store one prompt's K completions as an item to rank: its own transaction, or a part of the caller's."""
    if not MIN_K <= len(completions) <= MAX_K:
        raise RankingError(f"need between {MIN_K} and {MAX_K} completions to rank, got {len(completions)}")
    with write_transaction(db):
        created = now()
        prompt_set, prompt = db.execute("SELECT prompt_set, text FROM prompts WHERE id = ?", [prompt_id]).fetchone()
        item_id = db.execute(
            "INSERT INTO items (prompt_id, job_id, origin, content_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            [prompt_id, job_id, origin, content_hash(prompt_set, prompt, [c.text for c in completions]), created],
        ).lastrowid
        db.conn.executemany(  # plain executemany: sqlite-utils' insert_all builds its query anew for each item
            """INSERT INTO completions (item_id, position, text, generator_version_id, model_name, params, seed, n_tokens,
                                        finish_reason, gen_seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [(item_id, position, c.text, c.generator_version_id, c.model_name, to_json(c.params), c.seed, c.n_tokens,
              c.finish_reason, c.gen_seconds, created) for position, c in enumerate(completions)])
        uncertainty.set_priorities(db, "id = ?", [item_id])  # in a set's random share, its place in the queue is set now
        pause_demo_if_first(db, prompt_set, item_id)
    return item_id


def prompts_of_set(db: Database, prompt_set: str, limit: int | None = None) -> list[dict]:
    """The set's prompts: id, text and messages (JSON, None for a plain prompt; see `conversation.as_messages`)."""
    sql = "SELECT id, text, messages FROM prompts WHERE prompt_set = ? ORDER BY id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return list(db.query(sql, [prompt_set]))


def prompts_without_completions_from(db: Database, prompt_set: str, generator_version_id: int) -> list[dict]:
    """Prompts of the set that this generator version has not written completions for yet."""
    return list(
        db.query(
            """SELECT p.id, p.text, p.messages FROM prompts p
               WHERE p.prompt_set = ? AND NOT EXISTS (
                   SELECT 1 FROM items i JOIN completions c ON c.item_id = i.id
                   WHERE i.prompt_id = p.id AND c.generator_version_id = ?)
               ORDER BY p.id""",
            [prompt_set, generator_version_id],
        )
    )


def prompts_without_item_from(db: Database, prompt_set: str, generator_version_id: int | None,
                               remote_names: list[str], versus_version_id: int | None = None) -> list[dict]:
    """Prompts of the set with no item yet that holds completions from every one of these sources: the generator
    version (None: none), a head-to-head's other version (None: none) and each named remote generator. An arena run
    after a local-only run still has work."""
    return list(db.query(
        """SELECT p.id, p.text, p.messages FROM prompts p
           WHERE p.prompt_set = :set AND NOT EXISTS (
               SELECT 1 FROM items i WHERE i.prompt_id = p.id
                 AND (:version IS NULL OR EXISTS (SELECT 1 FROM completions c WHERE c.item_id = i.id
                                                  AND c.generator_version_id = :version))
                 AND (:versus IS NULL OR EXISTS (SELECT 1 FROM completions c WHERE c.item_id = i.id
                                                 AND c.generator_version_id = :versus))
                 AND (SELECT COUNT(DISTINCT c.model_name) FROM completions c WHERE c.item_id = i.id
                      AND c.generator_version_id IS NULL AND c.model_name IN (SELECT value FROM json_each(:names))) = :n)
           ORDER BY p.id""",
        {"set": prompt_set, "version": generator_version_id, "versus": versus_version_id, "names": to_json(remote_names),
         "n": len(remote_names)}))


def counts(db: Database) -> dict[str, int]:
    """Headline numbers for the admin page."""
    tables = {
        "prompts": "SELECT COUNT(*) FROM prompts",
        "items": "SELECT COUNT(*) FROM items",
        "completions": "SELECT COUNT(*) FROM completions",
        "rankings": "SELECT COUNT(*) FROM rankings WHERE skipped = 0",
        "skips": "SELECT COUNT(*) FROM rankings WHERE skipped = 1",
        "comparisons": "SELECT COUNT(*) FROM comparisons",
        "annotators": "SELECT COUNT(*) FROM annotators WHERE role != 'admin'",  # who rank (reviewers too), not the admins
        "demonstrations": "SELECT COUNT(*) FROM demonstrations",
    }
    return {name: db.execute(sql).fetchone()[0] for name, sql in tables.items()}


def ranked_items(db: Database, limit: int = 200) -> list[dict]:
    """Items served to annotators (not the hidden ones of edited demonstrations) with a ranking that counts (not a
    skip, not rejected), newest first, with how many they have."""
    return list(db.query(
        f"""SELECT * FROM (SELECT i.id, p.text AS prompt, (SELECT COUNT(*) FROM rankings r WHERE r.item_id = i.id
                                  AND r.skipped = 0 AND r.review != 'rejected') AS n_rankings
                           FROM items i JOIN prompts p ON p.id = i.prompt_id
                           WHERE i.n_rankings > 0 AND i.origin = 'sampled' ORDER BY i.id DESC)
            WHERE n_rankings > 0 LIMIT {int(limit)}"""))


def items_of_set(db: Database, prompt_set: str, limit: int = 500) -> list[dict]:
    return list(db.query(
        f"""SELECT i.id, p.text AS prompt FROM items i JOIN prompts p ON p.id = i.prompt_id
            WHERE p.prompt_set = ? AND i.origin = 'sampled' ORDER BY i.id LIMIT {int(limit)}""", [prompt_set]))


def item_with_content(db: Database, content: str) -> int | None:
    """The oldest item whose `content_hash` is this (see `content_hash`), or None."""
    row = db.execute("SELECT id FROM items WHERE content_hash = ? ORDER BY id LIMIT 1", [content]).fetchone()
    return None if row is None else row[0]


def ranked_generation_limits(db: Database) -> dict:
    """How the completions that annotators ranked were generated: the longest token cap they were sampled with
    (`max_new_tokens`, or `max_tokens` for remote models; None when unknown, e.g. imported ones), and the share
    of them cut at that cap (finish reason "length"). The policy update sets its own cap and penalty from these."""
    longest, cut, total = db.execute(
        """SELECT MAX(CAST(COALESCE(json_extract(c.params, '$.max_new_tokens'), json_extract(c.params, '$.max_tokens')) AS INTEGER)),
                  COALESCE(SUM(c.finish_reason = 'length'), 0), COUNT(*)
           FROM items i JOIN completions c ON c.item_id = i.id
           WHERE i.n_rankings > 0 AND json_valid(c.params)""").fetchone()
    return {"max_new_tokens": longest, "truncated_share": cut / total if total else 0.0, "ranked_completions": total}
