"""Import prompts, completions made elsewhere, and exported rankings. All or nothing.

Parsers are pure: bytes in, rows out, or a `BadImportFile` naming the line and the problem.
The `import_*` functions then write every row in one transaction.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlite_utils import Database

from data import annotation, items
from data.items import NewCompletion
from data.rankings import MAX_K, MIN_K, RankingError, validate_ranking
from data.store import write_transaction

PROMPT_FORMATS = ("txt", "csv", "jsonl")
COMPLETION_META = ("n_tokens", "finish_reason", "seed", "params", "gen_seconds")


class BadImportFile(ValueError):
    """An import file that cannot be read; nothing from it was stored."""

    def __init__(self, line: int | None, problem: str):
        where = f"line {line}: " if line else ""
        super().__init__(f"{where}{problem}. Nothing was imported.")
        self.line = line


@dataclass
class PromptRow:
    text: str
    source: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class CompletionsRow:
    prompt: str
    completions: list[NewCompletion]


def decode(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped), or an error naming the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BadImportFile(line, f"the file is not UTF-8 text (byte 0x{data[error.start]:02x}); save it as UTF-8") from None


def format_of(filename: str) -> str:
    suffix = Path(filename).suffix.lower().lstrip(".")
    return {"ndjson": "jsonl", "json": "jsonl", "text": "txt", "tsv": "csv"}.get(suffix, suffix)


def parse_prompts(data: bytes, fmt: str) -> list[PromptRow]:
    """Prompts from pasted text (one per line), CSV (a `prompt` column) or JSONL (a `prompt` key)."""
    text = decode(data)
    parsers = {"txt": _prompts_from_lines, "csv": _prompts_from_csv, "jsonl": _prompts_from_jsonl}
    if fmt not in parsers:
        raise BadImportFile(None, f"cannot import prompts from .{fmt}: use {', '.join(PROMPT_FORMATS)}")
    rows = parsers[fmt](text)
    if not rows:
        raise BadImportFile(None, "the file holds no prompts")
    return rows


def _prompts_from_lines(text: str) -> list[PromptRow]:
    return [PromptRow(line.strip(), source="pasted") for line in text.splitlines() if line.strip()]


def _prompts_from_csv(text: str) -> list[PromptRow]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if "prompt" not in header:
        raise BadImportFile(1, f"the CSV header needs a 'prompt' column (optional: source, tags); found {header}")
    rows = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise BadImportFile(line, f"expected {len(header)} columns as in the header, found {len(values)}")
        record = dict(zip(header, values))
        rows.append(PromptRow(required_text(record.get("prompt"), "prompt", line), record.get("source") or None,
                              [t.strip() for t in record.get("tags", "").replace(";", ",").split(",") if t.strip()]))
    return rows


def _prompts_from_jsonl(text: str) -> list[PromptRow]:
    rows = []
    for line, record in json_lines(text):
        tags = record.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadImportFile(line, "'tags' must be a list of strings")
        rows.append(PromptRow(required_text(record.get("prompt"), "prompt", line), record.get("source"), tags))
    return rows


def parse_completions(data: bytes) -> list[CompletionsRow]:
    """JSONL lines of {"prompt": str, "completions": [str, ...], "model": optional str}.

    A completion may also be an object with "text" and the optional provenance keys
    n_tokens, finish_reason, seed, params, gen_seconds.
    """
    rows = []
    for line, record in json_lines(decode(data)):
        prompt = required_text(record.get("prompt"), "prompt", line)
        completions = record.get("completions")
        if not isinstance(completions, list) or not MIN_K <= len(completions) <= MAX_K:
            raise BadImportFile(line, f"'completions' must be a list of {MIN_K} to {MAX_K} completions")
        model = record.get("model")
        rows.append(CompletionsRow(prompt, [_completion(c, model, line) for c in completions]))
    if not rows:
        raise BadImportFile(None, "the file holds no completions")
    return rows


def _completion(value, model: str | None, line: int) -> NewCompletion:
    if isinstance(value, str):
        return NewCompletion(value, model_name=model)
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return NewCompletion(value["text"], model_name=model, **{k: value[k] for k in COMPLETION_META if k in value})
    raise BadImportFile(line, "each completion must be a string or an object with a 'text' string")


def parse_rankings(data: bytes) -> list[dict]:
    """Rows of a rankings export (kind `rankings`, JSONL), validated."""
    rows = []
    for line, record in json_lines(decode(data)):
        for key, kind in (("prompt", str), ("completions", list), ("ranking", list), ("annotator", str)):
            if not isinstance(record.get(key), kind):
                raise BadImportFile(line, f"'{key}' is missing or not a {kind.__name__}")
        try:
            record["ranking"] = validate_ranking(record["ranking"], len(record["completions"]))
        except (RankingError, TypeError) as error:
            raise BadImportFile(line, f"bad ranking: {error}") from None
        rows.append(record)
    if not rows:
        raise BadImportFile(None, "the file holds no rankings")
    return rows


def json_lines(text: str):
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise BadImportFile(number, f"not valid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(record, dict):
            raise BadImportFile(number, "each line must be a JSON object")
        yield number, record


def required_text(value, name: str, line: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadImportFile(line, f"'{name}' is missing or empty")
    return value.strip()


def import_prompts(db: Database, rows: list[PromptRow], prompt_set: str) -> dict:
    """Add the prompts to the set in one transaction; texts already in the set are left alone."""
    with write_transaction(db):
        items.ensure_prompt_set(db, prompt_set)
        added = sum(items.add_prompt(db, prompt_set, r.text, r.source, r.tags)[1] for r in rows)
    return {"added": added, "already_present": len(rows) - added}


def import_completions(db: Database, rows: list[CompletionsRow], prompt_set: str,
                       generator_version_id: int | None = None) -> dict:
    """One item per row (its prompt is added to the set when new), in one transaction."""
    with write_transaction(db):
        items.ensure_prompt_set(db, prompt_set)
        for row in rows:
            prompt_id, _ = items.add_prompt(db, prompt_set, row.prompt, source="imported completions")
            for c in row.completions:
                c.generator_version_id = c.generator_version_id or generator_version_id
            items.add_item(db, prompt_id, row.completions)
    return {"items": len(rows), "completions": sum(len(r.completions) for r in rows)}


def import_rankings(db: Database, rows: list[dict], prompt_set: str = "imported") -> dict:
    """Recreate items, completions, rankings and their comparisons from a rankings export.

    Rows with the same `item_id` share one item, as they did where they were exported.
    """
    item_for: dict = {}
    with write_transaction(db):
        for row in rows:
            set_name = row.get("prompt_set") or prompt_set
            items.ensure_prompt_set(db, set_name)
            key = row.get("item_id", id(row))
            if key not in item_for:
                prompt_id, _ = items.add_prompt(db, set_name, row["prompt"].strip(), source="imported rankings")
                models = row.get("models") or [None] * len(row["completions"])
                item_for[key] = items.add_item(db, prompt_id, [NewCompletion(t, model_name=m) for t, m in zip(row["completions"], models)])
            annotator = annotation.annotator_id(db, row["annotator"])
            k = len(row["completions"])
            submitted = annotation.submit_ranking(
                db, item_for[key], annotator, row["ranking"], row.get("display_order") or list(range(k)),
                row.get("seconds"), row.get("flags") or [], row.get("comment") or "",
            )
            if row.get("created_at"):
                db.execute("UPDATE rankings SET created_at = ? WHERE id = ?", [row["created_at"], submitted.ranking_id])
    return {"rankings": len(rows), "items": len(item_for)}
