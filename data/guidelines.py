"""Guidelines per prompt set: what "better" means for this project, in Markdown, versioned.

Saving a different text adds version n+1; nothing is overwritten, so each ranking can record the
version it was made under (`rankings.guideline_version`) and agreement can be split by version.
"""

from dataclasses import dataclass

from sqlite_utils import Database

from data import audit
from data.accounts import User, require_admin
from data.store import now, write_transaction


@dataclass(frozen=True)
class Guideline:
    version: int
    text: str  # Markdown


def current_guidelines(db: Database, prompt_set: str) -> Guideline | None:
    """The newest version of the set's guidelines; None while it has none."""
    row = db.execute("SELECT version, text FROM guidelines WHERE prompt_set = ? ORDER BY version DESC LIMIT 1",
                     [prompt_set]).fetchone()
    return Guideline(*row) if row else None


def earlier_text(db: Database, prompt_set: str, version: int) -> str | None:
    """The text of the version before `version` (None for the first): what an annotator compares a new version with."""
    row = db.execute("SELECT text FROM guidelines WHERE prompt_set = ? AND version = ?", [prompt_set, version - 1]).fetchone()
    return row[0] if row else None


def save_guidelines(db: Database, prompt_set: str, text: str, actor: User) -> Guideline:
    """Make `text` the set's guidelines: version n+1, or the current version unchanged when the text is the same.

    Only an admin's unexpired session may, checked inside the write transaction (a demotion on its way cannot race it).
    """
    if not text.strip():
        raise ValueError("guidelines cannot be blank: write what a better completion looks like for this set")
    with write_transaction(db):
        require_admin(db, actor)
        if db.execute("SELECT 1 FROM prompt_sets WHERE name = ?", [prompt_set]).fetchone() is None:
            raise ValueError(f"there is no prompt set {prompt_set!r}: import prompts into it first")
        current = current_guidelines(db, prompt_set)
        if current and current.text == text:
            return current
        version = current.version + 1 if current else 1
        db.execute("INSERT INTO guidelines (prompt_set, version, text, author_id, created_at) VALUES (?, ?, ?, ?, ?)",
                   [prompt_set, version, text, actor.id, now()])
        audit.record(db, actor, "save guidelines", prompt_set, {"version": version})
    return Guideline(version, text)


def guideline_history(db: Database, prompt_set: str) -> list[dict]:
    """Every version of the set's guidelines, newest first, with who wrote it and when."""
    return list(db.query(
        """SELECT g.version, g.text, a.name AS author, g.created_at FROM guidelines g
           LEFT JOIN annotators a ON a.id = g.author_id WHERE g.prompt_set = ? ORDER BY g.version DESC""", [prompt_set]))
