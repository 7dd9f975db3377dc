"""Demonstrations: the answer an annotator wishes the model had given (step 1 of InstructGPT)."""

from dataclasses import dataclass

from sqlite_utils import Database

from data import annotation, audit, conversation, items
from data.accounts import require_admin
from data.importing import BadImportFile, json_lines, required_text, decode
from data.items import NewCompletion
from data.prompt_sets import BUILTIN_SET, SERVED_TO
from data.store import now, write_transaction

EDITED_FROM = "edited demonstration"


@dataclass
class Demonstration:
    prompt: str | list[dict]  # text, or the conversation before the answer (messages ending with a user turn)
    response: str


MAX_DEMONSTRATION = 50_000  # characters: longer than any answer a generator here is trained to give


def save_demonstration(db: Database, prompt_id: int, annotator: int, text: str,
                       source_completion_id: int | None = None, seconds: float | None = None) -> int:
    """Store a demonstration; one edited from a shown completion is also ranked above it.

    The implicit comparison is an item of two completions (the edit, then its source) ranked
    [[0], [1]] by the annotator, so exports and reward-model training see it like any ranking.
    Saving the same text for the same prompt again (a double click) returns the stored one.
    """
    text = text.strip()
    if not text:
        raise ValueError("write the answer you wish the model had given before saving")
    if len(text) > MAX_DEMONSTRATION:
        raise ValueError(f"the answer is {len(text):,} characters: keep a demonstration under {MAX_DEMONSTRATION:,}")
    with write_transaction(db):
        existing = db.execute("SELECT id FROM demonstrations WHERE prompt_id = ? AND annotator_id = ? AND text = ?",
                              [prompt_id, annotator, text]).fetchone()
        if existing:
            return existing[0]
        implicit_ranking = None
        if source_completion_id is not None:
            implicit_ranking = _rank_edit_over_source(db, prompt_id, annotator, text, source_completion_id, seconds)
        return db.execute(
            """INSERT INTO demonstrations (prompt_id, annotator_id, text, source, source_completion_id, implicit_ranking_id, seconds, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            [prompt_id, annotator, text, "edited" if source_completion_id else "written", source_completion_id,
             implicit_ranking, seconds, now()],
        ).lastrowid


def _rank_edit_over_source(db: Database, prompt_id: int, annotator: int, text: str, source_completion_id: int,
                           seconds: float | None) -> int:
    """The implicit ranking of an edited demonstration over the completion it started from."""
    source = db.execute("SELECT text, generator_version_id, model_name FROM completions WHERE id = ?",
                        [source_completion_id]).fetchone()
    if source is None:
        raise LookupError(f"completion {source_completion_id} does not exist")
    if source[0].strip() == text:
        raise ValueError("the demonstration is identical to the completion it started from: edit it, or rank instead")
    item_id = items.add_item(db, prompt_id, [NewCompletion(text, model_name=EDITED_FROM),
                                             NewCompletion(source[0], source[1], source[2])], origin="demonstration")
    return annotation.submit_ranking(db, item_id, annotator, [[0], [1]], [0, 1], seconds,
                                     comment=f"edited from completion {source_completion_id}").ranking_id


def next_prompt_without_demonstration(db: Database, exclude: list[int] = (), annotator: int | None = None) -> dict | None:
    """The prompt nobody has written a demonstration for (the "write demonstrations" queue): of the sets served to
    `annotator` (active, assigned to them or to nobody), the highest priority first, a project's own before the
    built-in demo set (which pauses only when a set of one's own gets items: a project that starts with demonstrations
    has none yet), then the oldest."""
    params = {"annotator": annotator, "demo": BUILTIN_SET, **{f"skip{i}": prompt_id for i, prompt_id in enumerate(exclude)}}
    skipped = f"AND p.id NOT IN ({', '.join(f':skip{i}' for i in range(len(exclude)))})" if exclude else ""
    return next(iter(db.query(
        f"""SELECT p.id, p.text, p.prompt_set FROM prompts p JOIN prompt_sets s ON s.name = p.prompt_set
            WHERE NOT EXISTS (SELECT 1 FROM demonstrations d WHERE d.prompt_id = p.id) AND {SERVED_TO} {skipped}
            ORDER BY s.priority DESC, p.prompt_set = :demo, p.id LIMIT 1""", params)), None)


def training_counts(db: Database, prompt_sets: list[str] | None = None) -> dict[str, int]:
    """The demonstrations SFT learns from (`demonstrations`), of `prompt_sets` (None: every set), and the prompts they
    answer: what a held-out share splits, since a prompt's demonstrations are held out together."""
    where = f"WHERE p.prompt_set IN ({', '.join('?' * len(prompt_sets))})" if prompt_sets else ""
    count, prompts = db.execute(f"""SELECT COUNT(*), COUNT(DISTINCT d.prompt_id) FROM demonstrations d
                                    JOIN prompts p ON p.id = d.prompt_id {where}""", prompt_sets or []).fetchone()
    return {"demonstrations": count, "prompts": prompts}


def demonstrations(db: Database, prompt_sets: list[str] | None = None) -> list[dict]:
    where, params = "", []
    if prompt_sets:
        where, params = f"WHERE p.prompt_set IN ({', '.join('?' * len(prompt_sets))})", list(prompt_sets)
    return list(db.query(
        f"""SELECT d.id, d.prompt_id, p.text AS prompt, p.messages, d.text AS response, d.source, p.prompt_set,
                   a.name AS annotator, d.created_at
            FROM demonstrations d JOIN prompts p ON p.id = d.prompt_id LEFT JOIN annotators a ON a.id = d.annotator_id
            {where} ORDER BY d.id""", params))


def parse_demonstrations(data: bytes) -> list[Demonstration]:
    """JSONL lines of {"prompt", "response"} or chat {"messages": [..., user, assistant]}."""
    rows = []
    for line, record in json_lines(decode(data)):
        if "messages" in record:
            rows.append(_from_messages(record["messages"], line))
        else:
            rows.append(Demonstration(required_text(record.get("prompt"), "prompt", line),
                                      required_text(record.get("response"), "response", line)))
    if not rows:
        raise BadImportFile(None, "the file holds no demonstrations")
    return rows


def _from_messages(messages, line: int) -> Demonstration:
    """The whole conversation before the final assistant turn is the prompt (system and earlier turns kept)."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadImportFile(line, "'messages' must be a list of {role, content} objects")
    if len(messages) < 2 or messages[-1].get("role") != "assistant" or messages[-2].get("role") != "user":
        raise BadImportFile(line, "'messages' must end with a user message followed by the assistant's answer")
    try:
        prompt = conversation.validate_messages(messages[:-1])
    except ValueError as error:
        raise BadImportFile(line, str(error)) from None
    return Demonstration(prompt if conversation.is_conversation(prompt) else prompt[0]["content"],
                         required_text(messages[-1].get("content"), "assistant content", line))


def import_demonstrations(db: Database, rows: list[Demonstration], prompt_set: str, actor=None) -> dict:
    """Add the demonstrations in one transaction; one with the same prompt and text as a stored one is counted, not added.
    `actor`: the admin asking (None: the command line)."""
    counts = {"demonstrations": 0, "already_present": 0}
    with write_transaction(db):
        require_admin(db, actor)
        items.ensure_prompt_set(db, prompt_set)
        for row in rows:
            prompt_id, _ = items.add_prompt(db, prompt_set, row.prompt, source="imported demonstrations")
            if db.execute("SELECT 1 FROM demonstrations WHERE prompt_id = ? AND text = ?", [prompt_id, row.response]).fetchone():
                counts["already_present"] += 1
                continue
            db.execute("INSERT INTO demonstrations (prompt_id, text, source, created_at) VALUES (?, ?, 'imported', ?)",
                       [prompt_id, row.response, now()])
            counts["demonstrations"] += 1
        audit.record(db, actor, "import demonstrations", prompt_set, counts)
    return counts


def messages_jsonl(db: Database, prompt_sets: list[str] | None = None) -> bytes:
    """Demonstrations in the `messages` format TRL's SFTTrainer loads as-is."""
    import json

    return "".join(json.dumps({"messages": [*conversation.as_messages(d["prompt"], d["messages"]),
                                            {"role": "assistant", "content": d["response"]}]}, ensure_ascii=False) + "\n"
                   for d in demonstrations(db, prompt_sets)).encode()
