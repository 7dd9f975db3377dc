"""Import prompts, completions made elsewhere, exported rankings and HH-RLHF pairs. All or nothing.

Parsers are pure: bytes in, rows out (a `Parsed` list, with the lines it refused), or a `BadImportFile` naming
every refused line and its problem (`RefusedLines`: the first MAX_LISTED of them, then a count). With
`skip_invalid` the valid rows are kept and the refused ones reported. data/formats.py reads the public preference
formats (TRL, scored completions, Chatbot Arena, OpenAssistant) into the same rows.
A prompt is text or a conversation: a `messages` list, or a `prompt` text that is an HH-RLHF
transcript ("Human: ...\n\nAssistant: ...\n\nHuman: ..."); see data/conversation.py.
The `import_*` functions then write every row in one transaction, skipping (and counting) what
the store already holds, so importing a file twice changes nothing the second time.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlite_utils import Database

from data import annotation, audit, conversation, items
from data.accounts import require_admin
from data.items import NewCompletion
from data.rankings import MAX_K, MIN_K, RankingError, is_int, seconds_ok, utc_timestamp, validate_order, validate_ranking
from data.store import write_transaction

PROMPT_FORMATS = ("txt", "csv", "jsonl")


MAX_LISTED = 100  # refused lines listed in a message; the rest are counted (all of them go to a rejects file)


class BadImportFile(ValueError):
    """An import file that cannot be read; nothing from it was stored."""

    def __init__(self, line: int | None, problem: str):
        where = f"line {line}: " if line else ""
        super().__init__(f"{where}{problem}. Nothing was imported.")
        self.line, self.problem = line, problem


@dataclass
class Refusal:
    """A line (or row) of a file that was not imported, why, and its text as the file had it (for a rejects file)."""

    line: int | None
    problem: str
    text: str = ""


class RefusedLines(BadImportFile):
    """Lines of a file are refused: every one is named (the first MAX_LISTED), and nothing was imported."""

    def __init__(self, refused: list[Refusal], valid: int):
        self.refused, self.valid = refused, valid
        first = refused[0]
        ValueError.__init__(self, self.message("import them alone with --skip-invalid"))
        self.line, self.problem = first.line, first.problem

    def message(self, how_to_skip: str | None) -> str:
        """What was refused and that nothing was imported; with `how_to_skip` (the CLI's flag, a screen's checkbox, or
        None where there is no such choice) the way to import the valid rows alone."""
        refused = self.refused
        hint = f" The other {self.valid:,} rows are valid: {how_to_skip}." if self.valid and how_to_skip else ""
        lines = [f"line {r.line}: {r.problem}" if r.line else r.problem for r in refused[:MAX_LISTED]]
        more = [f"… and {len(refused) - MAX_LISTED:,} more (--rejects FILE writes them all)"] if len(refused) > MAX_LISTED else []
        summary = f"{lines[0]}. Nothing was imported." if len(refused) == 1 else \
            f"{len(refused):,} lines are refused. Nothing was imported."
        return "\n".join([summary + hint, *(lines[1:] if len(refused) == 1 else lines), *more])


class Parsed(list):
    """The rows read from a file, the lines refused (`refused`, with why) and how many empty answers it holds."""

    def __init__(self, rows=(), refused=()):
        super().__init__(rows)
        self.refused: list[Refusal] = list(refused)

    def accepted(self, skip_invalid: bool, what: str) -> "Parsed":
        """These rows, unless a line was refused (then `RefusedLines`, unless `skip_invalid`) or none is left."""
        if self.refused and (not skip_invalid or not self):
            raise RefusedLines(self.refused, len(self))
        if not self:
            raise BadImportFile(None, f"the file holds no {what}")
        return self


def read_rows(records, to_rows) -> Parsed:
    """Rows from (line, record or the BadImportFile it is, raw text) triples: `to_rows(record, line)` gives a row, a
    list of rows or None (nothing to import); a `BadImportFile` it raises refuses that line only."""
    parsed = Parsed()
    for line, record, raw in records:
        try:
            if isinstance(record, BadImportFile):
                raise record
            out = to_rows(record, line)
        except BadImportFile as error:
            parsed.refused.append(Refusal(error.line or line, error.problem, raw))
            continue
        if isinstance(out, list):
            parsed.extend(out)
        elif out is not None:
            parsed.append(out)
    return parsed


def write_rejects(refused: list[Refusal], path) -> int:
    """The refused lines in a file, to fix and import again; returns how many."""
    Path(path).write_text(rejects_jsonl(refused), encoding="utf-8")
    return len(refused)


def rejects_jsonl(refused: list[Refusal]) -> str:
    """The refused lines as JSONL: {"line", "problem", "text": the line as the file had it}."""
    return "".join(json.dumps({"line": r.line, "problem": r.problem, "text": r.text}, ensure_ascii=False) + "\n" for r in refused)


def noticed(rows) -> dict:
    """What an import's result adds when there is any: the empty answers kept, the lines left out (`skip_invalid`)."""
    return {**({"empty_answers": n} if (n := empty_answers(rows)) else {}), **left_out(rows)}


def left_out(rows) -> dict:
    return {"lines_left_out": len(rows.refused)} if getattr(rows, "refused", None) else {}


def empty_answers(rows) -> int:
    """Completions that are empty or whitespace (a model that answered nothing): kept, shown as "(empty answer)"."""
    return sum(not (c if isinstance(c, str) else c.text).strip() for row in rows for c in row.completions)


@dataclass
class PromptRow:
    text: str  # a conversation's transcript
    source: str | None = None
    tags: list[str] = field(default_factory=list)
    messages: list[dict] | None = None  # a conversation; None for a plain prompt

    @property
    def prompt(self) -> str | list[dict]:
        return self.messages or self.text


@dataclass
class CompletionsRow:
    text: str  # the prompt; a conversation's transcript
    completions: list[NewCompletion]
    messages: list[dict] | None = None

    @property
    def prompt(self) -> str | list[dict]:
        return self.messages or self.text


@dataclass
class RankingRow:
    """One row of a rankings export: an item's content and one annotator's ranking of it."""

    text: str  # the prompt; a conversation's transcript
    completions: list[str]
    ranking: list[list[int]]
    annotator: str
    display_order: list[int] | None = None
    seconds: float | None = None
    created_at: str | None = None  # UTC, as `created_at` columns are written
    models: list[str | None] | None = None
    flags: list[str] = field(default_factory=list)
    comment: str = ""
    prompt_set: str | None = None
    messages: list[dict] | None = None  # a conversation; None for a plain prompt
    guideline_version: int | None = None

    @property
    def prompt(self) -> str | list[dict]:
        return self.messages or self.text


@dataclass
class HHPairs:
    """An HH-RLHF pair file read as rankings, and the lines left out (an empty reply, or both replies the same)."""

    rows: list[RankingRow]
    skipped_lines: list[int]


def decode(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped), or an error naming the line of the first bad byte."""
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise BadImportFile(line, "the file holds NUL bytes, so it is not plain text (UTF-16?): save it as UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BadImportFile(line, f"the file is not UTF-8 text (byte 0x{data[error.start]:02x}); save it as UTF-8") from None


def format_of(filename: str) -> str:
    suffix = Path(filename).suffix.lower().lstrip(".")
    return {"ndjson": "jsonl", "json": "jsonl", "text": "txt", "tsv": "csv"}.get(suffix, suffix)


def parse_prompts(data: bytes, fmt: str, skip_invalid: bool = False) -> Parsed:
    """Prompts from pasted text (one per line), CSV (a `prompt` column) or JSONL (a `prompt` or `messages` key)."""
    text = decode(data)
    parsers = {"txt": _prompts_from_lines, "csv": _prompts_from_csv, "jsonl": _prompts_from_jsonl}
    if fmt not in parsers:
        raise BadImportFile(None, f"cannot import prompts from .{fmt}: use {', '.join(PROMPT_FORMATS)}")
    return parsers[fmt](text).accepted(skip_invalid, "prompts")


def parse_pasted_prompts(text: str) -> Parsed:
    """Prompts pasted into the Import screen (`pasted_format`), each with the source "pasted" unless its line says one.

    >>> [(row.text, row.source) for row in parse_pasted_prompts('{"prompt": "hi"}\\n{"prompt": "yo", "source": "x"}')]
    [('hi', 'pasted'), ('yo', 'x')]
    """
    rows = parse_prompts(text.encode(), pasted_format(text))
    for row in rows:
        row.source = row.source or "pasted"
    return rows


def pasted_format(text: str) -> str:
    """Pasted prompts are JSON lines when every non-blank line is an object, plain text (one prompt per line) when
    none is; a mix is refused, since its JSON lines would otherwise become prompts of literal JSON.

    >>> pasted_format('{"prompt": "hi"}\\n\\n{"messages": []}'), pasted_format("What is {x}?\\nhi")
    ('jsonl', 'txt')
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    objects = [n for n, line in enumerate(lines, 1) if line.startswith("{") and line.endswith("}")]
    if objects and len(objects) < len(lines):
        raise BadImportFile(None, f"{len(objects)} of the {len(lines)} pasted lines are JSON objects and the others "
                                  "plain text: paste either JSON lines or plain lines, not both")
    return "jsonl" if objects else "txt"


def _prompts_from_lines(text: str) -> Parsed:
    return Parsed(PromptRow(line.strip(), source="pasted") for line in text.splitlines() if line.strip())


def _prompts_from_csv(text: str) -> Parsed:
    def prompt_row(record: dict, line: int) -> PromptRow:
        text, messages = prompt_of({"prompt": record.get("prompt")}, line)
        return PromptRow(text, record.get("source") or None,
                         [t.strip() for t in record.get("tags", "").replace(";", ",").split(",") if t.strip()], messages)

    return read_rows(csv_dicts(text, required=("prompt",), optional_columns="source, tags"), prompt_row)


def csv_dicts(text: str, required: tuple[str, ...] = (), optional_columns: str = ""):
    """(line, record keyed by the lower-cased header, raw line) for each non-blank CSV record; a record with the wrong
    number of fields is refused on its own line. A broken quote stops the reading (nothing after it can be trusted)."""
    records = csv_records(text)
    _, first = next(records, (1, []))
    header = [h.strip().lower() for h in first]
    missing = [c for c in required if c not in header]
    if missing:
        also = f" (optional: {optional_columns})" if optional_columns else ""
        raise BadImportFile(1, f"the CSV header needs a {' and a '.join(repr(c) for c in missing)} column{also}; found {header}")
    for line, values in records:
        if not any(v.strip() for v in values):
            continue
        raw = ",".join(values)
        if len(values) != len(header):
            yield line, BadImportFile(line, f"expected {len(header)} columns as in the header, found {len(values)}"), raw
        else:
            yield line, dict(zip(header, values)), raw


def csv_records(text: str):
    """(line the record starts on, values) for each CSV record, read strictly."""
    reader = csv.reader(io.StringIO(text), strict=True)
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise BadImportFile(line, _csv_problem(str(error))) from None
        yield line, values


def _csv_problem(message: str) -> str:
    if "end of data" in message:
        return 'a quoted field starting here is never closed: close it with ", and write a quote inside a field as ""'
    if "field limit" in message:
        return f"a field is longer than {csv.field_size_limit()} characters: split it or import JSONL"
    return f'not valid CSV ({message}): quote fields holding commas or quotes, and write a quote inside a field as ""'


def _prompts_from_jsonl(text: str) -> Parsed:
    def prompt_row(record: dict, line: int) -> PromptRow:
        tags = record.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadImportFile(line, "'tags' must be a list of strings")
        source = optional(record, "source", str, "a string", line)
        text, messages = prompt_of(record, line)
        return PromptRow(text, source, tags, messages)

    return read_rows(json_records(text), prompt_row)


def prompt_of(record: dict, line: int) -> tuple[str, list[dict] | None]:
    """(text, messages) of a record's prompt: its `messages`, else its `prompt` text, read as a conversation
    when it is an HH-RLHF transcript. A single user turn is a plain prompt (messages None).

    >>> prompt_of({"prompt": "Human: Hi\\n\\nAssistant: Hello\\n\\nHuman: Joke?"}, 1)[1][-1]
    {'role': 'user', 'content': 'Joke?'}
    >>> prompt_of({"messages": [{"role": "user", "content": "Hi"}]}, 1)
    ('Hi', None)
    """
    messages = _messages_of(record, line)
    if messages is None:
        return required_text(record.get("prompt"), "prompt", line), None
    text = conversation.transcript(messages)
    prompt = record.get("prompt")
    if record.get("messages") is not None and isinstance(prompt, str) and prompt.strip() != text.strip():
        raise BadImportFile(line, "'prompt' and 'messages' hold different prompts: keep only 'messages'")
    return (text, messages) if conversation.is_conversation(messages) else (text.strip(), None)


def _messages_of(record: dict, line: int) -> list[dict] | None:
    try:
        if record.get("messages") is not None:
            return conversation.validate_messages(record["messages"])
        if isinstance(record.get("prompt"), str) and conversation.is_hh_transcript(record["prompt"]):
            return conversation.validate_messages(conversation.parse_hh_transcript(record["prompt"]))
    except conversation.BadConversation as error:
        raise BadImportFile(line, f"bad conversation: {error}") from None
    return None


def parse_completions(data: bytes, skip_invalid: bool = False) -> Parsed:
    """JSONL lines of {"prompt": str, "completions": [str, ...], "model": optional str}.

    A conversation comes as "messages" (ending with the user turn the completions answer) instead of "prompt".

    A completion may also be an object with "text" and the optional provenance keys
    n_tokens, finish_reason, seed, params, gen_seconds.
    """
    return read_rows(json_records(decode(data)), completions_row).accepted(skip_invalid, "completions")


def completions_row(record: dict, line: int) -> CompletionsRow:
    text, messages = prompt_of(record, line)
    completions = record.get("completions")
    if not isinstance(completions, list) or not MIN_K <= len(completions) <= MAX_K:
        raise BadImportFile(line, f"'completions' must be a list of {MIN_K} to {MAX_K} completions")
    model = optional(record, "model", str, "a string", line)
    return CompletionsRow(text, [_completion(c, model, line) for c in completions], messages)


# Provenance keys of a completion object: (accepts the value, what it must be).
COMPLETION_META = {
    "n_tokens": (lambda v: is_int(v) and 0 <= v < 2**63, "a whole number, 0 or more"),
    "finish_reason": (lambda v: isinstance(v, str), "a string"),
    "seed": (lambda v: is_int(v) and -(2**63) <= v < 2**63, "a whole number that fits in 64 bits"),
    "params": (lambda v: isinstance(v, dict), "an object"),
    "gen_seconds": (seconds_ok, "a number of seconds, 0 or more"),
}


def _completion(value, model: str | None, line: int) -> NewCompletion:
    if isinstance(value, str):
        return NewCompletion(completion_text(value, line), model_name=model)
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise BadImportFile(line, "each completion must be a string or an object with a 'text' string")
    meta = {}
    for key, (accepts, kind) in COMPLETION_META.items():
        if value.get(key) is not None and not accepts(value[key]):
            raise BadImportFile(line, f"a completion's '{key}' must be {kind} or null, got {value[key]!r}"[:300])
        meta[key] = value.get(key)
    meta["params"] = meta["params"] or {}
    return NewCompletion(completion_text(value["text"], line), model_name=model, **meta)


def completion_text(value, line: int) -> str:
    """A completion's text: any string, an empty one included (a model that answered nothing is data to rank)."""
    if not isinstance(value, str):
        raise BadImportFile(line, f"a completion must be a string, got {type(value).__name__} {value!r}"[:300])
    return value


def parse_rankings(data: bytes, skip_invalid: bool = False) -> Parsed:
    """Rows of a rankings export (kind `rankings`, JSONL), each checked against one schema."""
    return read_rows(json_records(decode(data)), ranking_row).accepted(skip_invalid, "rankings")


def ranking_row(record: dict, line: int) -> RankingRow:
    completions = record.get("completions")
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions) \
            or not MIN_K <= len(completions) <= MAX_K:
        raise BadImportFile(line, f"'completions' must be a list of {MIN_K} to {MAX_K} strings")
    k = len(completions)
    text, messages = prompt_of(record, line)
    row = RankingRow(
        text=text,
        messages=messages,
        completions=[completion_text(c, line) for c in completions],
        ranking=_checked(validate_ranking, record.get("ranking"), k, "ranking", line),
        annotator=annotator_name(record.get("annotator"), line),
        display_order=_checked(validate_order, record.get("display_order"), k, "display_order", line, allow_null=True),
        seconds=optional(record, "seconds", seconds_ok, "a number of seconds, 0 or more", line),
        created_at=_created_at(record.get("created_at"), line),
        models=_models(record.get("models"), k, line),
        flags=_flags(record.get("flags"), line),
        comment=optional(record, "comment", str, "a string", line) or "",
        prompt_set=optional(record, "prompt_set", lambda v: isinstance(v, str) and v.strip(), "a non-empty string", line),
        guideline_version=optional(record, "guideline_version", lambda v: is_int(v) and 1 <= v < 2**63, "a whole number, 1 or more", line),
    )
    optional(record, "item_id", lambda v: is_int(v) or isinstance(v, str), "a whole number or a string", line)
    return row


def parse_hh_pairs(data: bytes, annotator: str = "hh-rlhf", skip_invalid: bool = False) -> HHPairs:
    """HH-RLHF JSONL ({"chosen": dialogue, "rejected": dialogue}) as rankings by `annotator`: chosen above rejected.

    Each pair is one item of 2 completions: the prompt is the dialogue up to its last user turn, the
    completions the two final assistant replies (an empty reply is kept: an empty answer). A pair whose
    two replies are the same cannot be ranked and is left out, by line number (HH-RLHF holds a few).
    """
    annotator = annotator_name(annotator, 0)
    skipped = []

    def pair_row(record: dict, line: int) -> RankingRow | None:
        row = hh_row(record, line, annotator)
        if row.completions[0] == row.completions[1]:
            skipped.append(line)
            return None
        return row

    parsed = read_rows(json_records(decode(data)), pair_row).accepted(skip_invalid, "HH-RLHF pairs to rank")
    return HHPairs(parsed, skipped)


def hh_row(record: dict, line: int, annotator: str) -> RankingRow:
    """One HH-RLHF pair as a ranking of its two final replies, chosen over rejected."""
    chosen, rejected = (_dialogue(record, key, line) for key in ("chosen", "rejected"))
    try:
        messages, chosen_reply, rejected_reply = conversation.split_hh_pair(chosen, rejected)
        messages = conversation.validate_messages(messages)
    except conversation.BadConversation as error:
        raise BadImportFile(line, f"not an HH-RLHF pair: {error}") from None
    plain = not conversation.is_conversation(messages)
    return RankingRow(text=conversation.transcript(messages), messages=None if plain else messages,
                      completions=[chosen_reply, rejected_reply], ranking=[[0], [1]], annotator=annotator)


def _dialogue(record: dict, key: str, line: int) -> str:
    if not isinstance(record.get(key), str) or not conversation.is_hh_transcript(record[key]):
        raise BadImportFile(line, f"'{key}' must be a whole HH-RLHF dialogue (\"\\n\\nHuman: ...\\n\\nAssistant: ...\")")
    return record[key]


def _checked(check, value, k: int, name: str, line: int, allow_null: bool = False):
    if value is None and allow_null:
        return None
    try:
        return check(value, k)
    except RankingError as error:
        raise BadImportFile(line, f"bad {name}: {error}") from None


def optional(record: dict, key: str, accepts, kind: str, line: int):
    """record[key] when `accepts` it (a type or a predicate), None when absent or null."""
    value = record.get(key)
    ok = isinstance(value, accepts) if isinstance(accepts, type) else accepts(value)
    if value is not None and not ok:
        raise BadImportFile(line, f"'{key}' must be {kind} or null, got {value!r}"[:300])
    return value


def _created_at(value, line: int) -> str | None:
    if value is None:
        return None
    stamp = utc_timestamp(value) if isinstance(value, str) else None
    if stamp is None:
        raise BadImportFile(line, f"'created_at' must be an ISO 8601 time such as 2024-05-01T12:00:00+00:00, got {value!r}"[:300])
    return stamp


def _models(value, k: int, line: int) -> list[str | None] | None:
    if value is not None and (not isinstance(value, list) or len(value) != k
                              or not all(m is None or isinstance(m, str) for m in value)):
        raise BadImportFile(line, f"'models' must be a list of {k} model names (strings or null), one per completion")
    return value


def _flags(value, line: int) -> list[str]:
    if value is not None and (not isinstance(value, list) or not all(isinstance(f, str) and f in annotation.FLAGS for f in value)):
        raise BadImportFile(line, f"'flags' must be a list of {list(annotation.FLAGS)}, got {value!r}"[:300])
    return value or []


def json_lines(text: str):
    """(line number, object) for each non-blank line of JSONL text; the first bad line raises."""
    for number, record, _ in json_records(text):
        if isinstance(record, BadImportFile):
            raise record
        yield number, record


def json_records(text: str):
    """(line number, object or the BadImportFile that line is, the line) for each non-blank line of JSONL text."""
    # Only "\n" ends a line: JSON strings may hold U+2028 or U+0085, which str.splitlines() would split on.
    for number, raw in enumerate(text.split("\n"), start=1):
        if raw.strip():
            yield number, _json_object(raw, number), raw


def _json_object(raw: str, number: int) -> dict | BadImportFile:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        return BadImportFile(number, f"not valid JSON ({error.msg} at column {error.colno})")
    except (ValueError, RecursionError):
        return BadImportFile(number, "not readable JSON: nested too deeply or a number too long")
    if not isinstance(record, dict):
        return BadImportFile(number, "each line must be a JSON object")
    if not _encodable(raw, record):
        return BadImportFile(number, "a string holds an escape that is no character (a lone \\ud800-\\udfff surrogate)")
    return record


def _encodable(raw: str, record: dict) -> bool:
    """Whether the record's strings can be stored as UTF-8 (JSON escapes can make lone surrogates)."""
    if "\\u" not in raw.lower():
        return True
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def required_text(value, name: str, line: int) -> str:
    if isinstance(value, list) and name == "prompt":
        raise BadImportFile(line, "'prompt' is a list (of messages?): give a conversation as 'messages', or import the "
                                  "file with --format trl, which reads TRL's conversational prompts")
    if not isinstance(value, str) or not value.strip():
        raise BadImportFile(line, f"'{name}' is missing or empty")
    return value.strip()


def annotator_name(value, line: int) -> str:
    """An annotator's name from a file: text of at most 200 characters with no control character (no ANSI escape)."""
    name = required_text(value, "annotator", line)
    if len(name) > 200 or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):
        raise BadImportFile(line, f"'annotator' must be at most 200 characters with no control characters, got {name[:40]!r}…")
    return name


def set_name(value: str) -> str:
    """A prompt set's name as an import is given it: not blank."""
    if not isinstance(value, str) or not value.strip():
        raise BadImportFile(None, "name the prompt set to import into (a blank name is refused)")
    if len(value.strip()) > 200 or any(ord(ch) < 32 for ch in value):
        raise BadImportFile(None, "a prompt set's name is at most 200 characters with no control characters")
    return value.strip()


def import_prompts(db: Database, rows: list[PromptRow], prompt_set: str, actor=None) -> dict:
    """Add the prompts to the set in one transaction; texts already in the set are left alone. `actor`: the admin
    asking (None: the command line), re-checked inside the transaction and named in the audit log."""
    prompt_set = set_name(prompt_set)
    with write_transaction(db):
        require_admin(db, actor)
        items.ensure_prompt_set(db, prompt_set)
        added = sum(items.add_prompt(db, prompt_set, r.prompt, r.source, r.tags)[1] for r in rows)
        audit.record(db, actor, "import prompts", prompt_set, {"added": added, "lines": len(rows)})
    return {"added": added, "already_present": len(rows) - added, **left_out(rows)}


def import_completions(db: Database, rows: list[CompletionsRow], prompt_set: str,
                       generator_version_id: int | None = None, actor=None) -> dict:
    """One item per row, in one transaction; a row whose item the set already holds is counted, not added."""
    prompt_set = set_name(prompt_set)
    counts = {"items": 0, "already_present": 0, "completions": 0, **noticed(rows)}
    with write_transaction(db):
        require_admin(db, actor)
        for row in rows:
            for c in row.completions:
                c.generator_version_id = c.generator_version_id or generator_version_id
            _, is_new = find_or_add_item(db, prompt_set, row.prompt, row.completions, "imported completions")
            counts["items" if is_new else "already_present"] += 1
            counts["completions"] += len(row.completions) if is_new else 0
        audit.record(db, actor, "import completions", prompt_set, counts)
    return counts


def import_rankings(db: Database, rows: list[RankingRow], prompt_set: str = "imported", actor=None) -> dict:
    """Recreate items, completions, rankings and their comparisons from a rankings export.

    Idempotent: an item with the same content is reused, and a ranking its annotator already
    gave that item is counted as already present. Annotators named in the file get disabled
    accounts (provenance only).
    """
    prompt_set = set_name(prompt_set)
    counts = {"rankings": 0, "already_present": 0, "items": 0, **noticed(rows)}
    names = _Names(db)
    with write_transaction(db):
        require_admin(db, actor)
        for row in rows:
            models = row.models or [None] * len(row.completions)
            item_id, is_new = find_or_add_item(db, row.prompt_set or prompt_set, row.prompt,
                                               [NewCompletion(t, model_name=m) for t, m in zip(row.completions, models)],
                                               "imported rankings", names.ensured_sets)
            counts["items"] += is_new
            submitted = annotation.submit_ranking(
                db, item_id, names.provenance_annotator(item_id, row.annotator), row.ranking,
                row.display_order or list(range(len(row.completions))), row.seconds, row.flags, row.comment)
            if submitted.was_new and (row.created_at or row.guideline_version):
                db.execute("UPDATE rankings SET created_at = COALESCE(?, created_at), guideline_version = ? WHERE id = ?",
                           [row.created_at, row.guideline_version, submitted.ranking_id])
            counts["rankings" if submitted.was_new else "already_present"] += 1
        audit.record(db, actor, "import rankings", prompt_set, counts)
    return counts


def import_hh_pairs(db: Database, pairs: HHPairs, prompt_set: str = "hh-rlhf") -> dict:
    """An HH-RLHF pair file as items and rankings, through `import_rankings` (all or nothing, idempotent)."""
    return {**import_rankings(db, pairs.rows, prompt_set), "pairs_left_out": len(pairs.skipped_lines)}


class _Names:
    """What one import looks up again and again (annotators' ids, whether a name is a local account, the prompt sets
    made), asked once each inside the import's transaction."""

    def __init__(self, db: Database):
        self.db, self.ids, self.accounts, self.ensured_sets = db, {}, {}, set()

    def provenance_annotator(self, item_id: int, name: str) -> int:
        """Who an imported ranking is stored under. A name in a file never earns a local account credit: a ranking
        by 'ann' goes to 'ann (imported)', unless the account 'ann' already ranked this very item (the file is
        this store's own export, imported again)."""
        name = name.strip()
        if name not in self.accounts:
            row = self.db.execute("SELECT id FROM annotators WHERE name = ? AND origin = 'account'", [name]).fetchone()
            self.accounts[name] = row[0] if row else None
        account = self.accounts[name]
        if account is not None and not self.db.execute("SELECT 1 FROM rankings WHERE item_id = ? AND annotator_id = ?",
                                                        [item_id, account]).fetchone():
            name = f"{name} (imported)"
        if name not in self.ids:
            self.ids[name] = annotation.annotator_id(self.db, name)
        return self.ids[name]


def find_or_add_item(db: Database, prompt_set: str, prompt: str | list[dict], completions: list[NewCompletion],
                     source: str, ensured_sets: set | None = None) -> tuple[int, bool]:
    """The item with this content (set, prompt, completion texts in order), added if new. Returns (id, was_new).
    `ensured_sets`: the sets this import already made sure of."""
    if ensured_sets is None or prompt_set not in ensured_sets:
        items.ensure_prompt_set(db, prompt_set)
        if ensured_sets is not None:
            ensured_sets.add(prompt_set)
    prompt_id, _ = items.add_prompt(db, prompt_set, prompt, source=source)
    text = prompt if isinstance(prompt, str) else conversation.transcript(prompt)
    existing = items.item_with_content(db, items.content_hash(prompt_set, text, [c.text for c in completions]))
    if existing is not None:
        return existing, False
    return items.add_item(db, prompt_id, completions), True
