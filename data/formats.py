"""The preference formats people hold their data in, read into this store's rows (data/importing.py writes them).

One entry point, `read(data, filename, fmt)`, for every format and container:
- containers: JSONL (also a JSON array), CSV (flat formats) and Parquet, by the file's suffix;
- formats (`FORMATS`; `auto` recognises them by their columns):
  `rankings`, `completions`, `hh`: this app's own rankings export, completions made elsewhere, Anthropic's HH-RLHF;
  `trl`: TRL's preference format, standard (`prompt`, `chosen`, `rejected` strings; without `prompt`, the shared
  beginning of `chosen` and `rejected` is the prompt, as TRL's `extract_prompt` takes it) or conversational (lists
  of messages; the shared messages are the prompt): an item of 2 completions ranked chosen over rejected. This
  app's pairs export reads back as it was written;
  `scored`: K completions with a score each (UltraFeedback's `instruction` and `completions[].overall_score`, or a
  per-aspect rating `annotations.<aspect>.Rating` chosen with `score_key`; or `{prompt, completions, scores}`):
  one ranking per item, best score first, equal scores tied;
  `arena`: Chatbot Arena battles (`model_a`, `model_b`, `winner` in model_a|model_b|tie|tie (bothbad), and
  `conversation_a`/`conversation_b` or `prompt`/`response_a`/`response_b`): items of 2 completions with their
  model names, ties kept, "both bad" as that flag; they feed the model leaderboard;
  `oasst`: OpenAssistant messages (`message_id`, `parent_id`, `role` prompter|assistant, `text`, `rank`; or the
  nested trees export): each prompter message with 2+ ranked assistant replies is an item whose prompt is the
  conversation so far, ranked by the replies' ranks.
Every line is read on its own: a bad one is refused with its line (row) number and the reason, the others still
read, so one run names every problem (see `importing.Parsed`).
"""

import datetime
import io
import json
from dataclasses import dataclass
from pathlib import Path

from data import conversation, importing
from data.importing import (BadImportFile, Parsed, RankingRow, Refusal, _created_at, annotator_name, completion_text,
                            completions_row, csv_dicts, decode, hh_row, json_records, prompt_of, ranking_row, read_rows)
from data.rankings import MAX_K, MIN_K

FORMATS = ("rankings", "completions", "hh", "trl", "scored", "arena", "oasst")
CONTAINERS = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv", "tsv": "csv", "parquet": "parquet"}
FLAT = ("trl", "arena", "oasst", "hh")  # formats whose columns fit a CSV
SNIFF_ROWS = 20  # rows auto-detection looks at
ARENA_WINNERS = {"model_a": [[0], [1]], "model_b": [[1], [0]], "tie": [[0, 1]], "tie (bothbad)": [[0, 1]]}
ROLES_OASST = {"prompter": "user", "assistant": "assistant"}


@dataclass
class Read:
    """What a file holds: its format, and its rows (completions rows for `completions`, rankings for the rest)."""

    fmt: str
    rows: Parsed
    skipped: list[int]  # lines read but with nothing to rank (two equal answers)


def read(data: bytes, filename: str, fmt: str = "auto", annotator: str | None = None, score_key: str | None = None,
         skip_invalid: bool = False) -> Read:
    """Rows of a preference file in `fmt` (or the format its columns show); every bad line is named at once."""
    container = container_of(filename)
    if fmt != "auto" and fmt not in FORMATS:
        raise BadImportFile(None, f"unknown format {fmt!r}: use auto or one of {', '.join(FORMATS)}")
    records = list(_records(data, container))
    fmt = detect(records) if fmt == "auto" else fmt
    if container == "csv" and fmt not in FLAT:
        raise BadImportFile(None, f"the {fmt} format holds lists, which a CSV cannot: use JSONL or Parquet")
    skipped: list[int] = []
    if fmt == "oasst":
        rows = _oasst(records, annotator or "oasst")
    else:
        rows = read_rows(records, _reader(fmt, annotator, score_key, skipped))
    what = "completions" if fmt == "completions" else "rankings"
    return Read(fmt, rows.accepted(skip_invalid, f"{what} in the {fmt} format"), skipped)


def container_of(filename: str) -> str:
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix not in CONTAINERS:
        raise BadImportFile(None, f"cannot read .{suffix or '(no suffix)'} files: use .jsonl, .json, .csv or .parquet")
    return CONTAINERS[suffix]


def _records(data: bytes, container: str):
    """(line or row number, record or its BadImportFile, raw text) for each record of the file."""
    if container == "parquet":
        yield from _parquet_records(data)
        return
    text = decode(data)
    if container == "csv":
        yield from csv_dicts(text)
    elif text.lstrip().startswith("["):  # a JSON array of objects, as `datasets` writes .json files
        yield from _json_array_records(text)
    else:
        yield from json_records(text)


def _json_array_records(text: str):
    try:
        values = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise BadImportFile(None, f"the file starts like a JSON array but is not valid JSON ({error})"[:300]) from None
    for number, value in enumerate(values, start=1):
        record = value if isinstance(value, dict) else BadImportFile(number, "each element must be a JSON object")
        yield number, record, json.dumps(value, ensure_ascii=False)[:100_000]


def _parquet_records(data: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError) as error:
        raise BadImportFile(None, f"not a Parquet file ({error})"[:300]) from None
    number = 0
    for batch in table.iter_batches(batch_size=10_000):
        for record in batch.to_pylist():
            number += 1
            yield number, record, json.dumps(record, ensure_ascii=False, default=str)[:100_000]


def detect(records: list) -> str:
    """The format the first SNIFF_ROWS readable records show by their columns, or a refusal naming the candidates."""
    sample = [r for _, r, _ in records if isinstance(r, dict)][:SNIFF_ROWS]
    if not sample:
        raise BadImportFile(None, "no readable record to tell the format from")
    found = {fmt for record in sample for fmt in candidates(record)}
    if len(found) == 1:
        return found.pop()
    columns = sorted({key for record in sample for key in record})[:20]
    if not found:
        raise BadImportFile(None, f"cannot tell the format from the columns {columns}: name it with --format "
                                  f"(one of {', '.join(FORMATS)})")
    raise BadImportFile(None, f"the columns {columns} fit more than one format ({', '.join(sorted(found))}): "
                              "name it with --format")


def candidates(record: dict) -> list[str]:
    """The formats one record's columns fit."""
    keys, found = set(record), []
    if {"ranking", "completions"} <= keys:
        found.append("rankings")
    if {"message_id", "parent_id", "role", "text"} <= keys or ("message_tree_id" in keys and isinstance(record.get("prompt"), dict)):
        found.append("oasst")
    if {"model_a", "model_b"} <= keys and ("winner" in keys or "winner_model_a" in keys):
        found.append("arena")
    if {"chosen", "rejected"} <= keys:
        hh = "prompt" not in keys and all(isinstance(record[k], str) and conversation.is_hh_transcript(record[k])
                                          for k in ("chosen", "rejected"))
        found.append("hh" if hh else "trl")
    completions = record.get("completions")
    if isinstance(completions, list) and "ranking" not in keys:
        scored = "scores" in keys or any(isinstance(c, dict) and ("overall_score" in c or "annotations" in c) for c in completions)
        found.append("scored" if scored else "completions")
    return found


def _reader(fmt: str, annotator: str | None, score_key: str | None, skipped: list[int]):
    """The function turning one record into a row, for `read_rows`."""
    def hh(record, line):
        row = hh_row(record, line, annotator or "hh-rlhf")
        return _unless_same(row, line, skipped)

    readers = {
        "rankings": ranking_row,
        "completions": completions_row,
        "hh": hh,
        "trl": lambda record, line: _unless_same(trl_row(record, line, annotator or "trl"), line, skipped),
        "scored": lambda record, line: scored_row(record, line, annotator or "scored", score_key),
        "arena": lambda record, line: _unless_same(arena_row(record, line, annotator or "arena"), line, skipped),
    }
    return readers[fmt]


def _unless_same(row: RankingRow, line: int, skipped: list[int]) -> RankingRow | None:
    """A pair whose two answers are the same text has nothing to prefer: left out, its line counted."""
    if len(row.completions) == 2 and row.completions[0] == row.completions[1]:
        skipped.append(line)
        return None
    return row


# --- TRL ---------------------------------------------------------------------------------------------------------

def trl_row(record: dict, line: int, annotator: str) -> RankingRow:
    """TRL's preference format: an item of 2 completions, chosen ranked over rejected."""
    chosen, rejected, prompt = record.get("chosen"), record.get("rejected"), record.get("prompt")
    if isinstance(chosen, str) and isinstance(rejected, str):
        prompt_text, chosen, rejected = _standard_split(prompt, chosen, rejected, line)
        messages = _trl_prompt_messages(prompt, line) if isinstance(prompt, list) else None
        text, messages = _prompt(prompt_text, messages, line)
    elif isinstance(chosen, list) and isinstance(rejected, list):
        messages, chosen, rejected = _conversational_split(prompt, chosen, rejected, line)
        text, messages = _prompt(None, messages, line)
    else:
        raise BadImportFile(line, "'chosen' and 'rejected' must both be strings, or both lists of messages")
    models = [_text_or_none(record.get(k)) for k in ("chosen_generator", "rejected_generator")]
    return RankingRow(text=text, messages=messages, completions=[completion_text(chosen, line), completion_text(rejected, line)],
                      ranking=[[0], [1]], annotator=_annotator(record, line, annotator),
                      models=models if any(models) else None, created_at=_optional_time(record.get("created_at"), line))


def _standard_split(prompt, chosen: str, rejected: str, line: int) -> tuple[str | None, str, str]:
    """(prompt, chosen, rejected) of the standard format; without a prompt, the shared beginning is the prompt (as
    TRL's extract_prompt: cut where the two first differ, a space before the cut going with the answers)."""
    if prompt is not None:
        return (prompt if isinstance(prompt, str) else None), chosen, rejected
    cut = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))
    if cut and chosen[cut - 1] == " ":
        cut -= 1
    if not chosen[:cut].strip():
        raise BadImportFile(line, "no 'prompt', and 'chosen' and 'rejected' share no beginning to take as the prompt")
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _conversational_split(prompt, chosen: list, rejected: list, line: int) -> tuple[list[dict], str, str]:
    """(prompt messages, chosen reply, rejected reply) of the conversational format: `prompt` messages and one
    assistant message each, or whole conversations whose shared messages are the prompt (implicit prompt)."""
    chosen, rejected = _trl_prompt_messages(chosen, line, "chosen"), _trl_prompt_messages(rejected, line, "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    head, chosen_tail, rejected_tail = chosen[:shared], chosen[shared:], rejected[shared:]
    if isinstance(prompt, list):
        messages = _trl_prompt_messages(prompt, line)
        if head and head != messages[: len(head)]:
            raise BadImportFile(line, "'chosen' and 'rejected' repeat a conversation that differs from 'prompt'")
    elif isinstance(prompt, str) and prompt.strip() and not head:
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = head
    if len(chosen_tail) != 1 or len(rejected_tail) != 1 or {chosen_tail[0]["role"], rejected_tail[0]["role"]} != {"assistant"}:
        raise BadImportFile(line, "after the prompt, 'chosen' and 'rejected' must each hold one assistant message (the answer)")
    if not messages:
        raise BadImportFile(line, "no prompt: give 'prompt', or conversations in 'chosen' and 'rejected' that start with it")
    return messages, chosen_tail[0]["content"], rejected_tail[0]["content"]


def _trl_prompt_messages(value, line: int, name: str = "prompt") -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                              and isinstance(m.get("content"), str) for m in value):
        raise BadImportFile(line, f"'{name}' must be a list of {{role, content}} messages")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _prompt(text: str | None, messages: list[dict] | None, line: int) -> tuple[str, list[dict] | None]:
    """(text, messages) of a prompt given as text or as messages ending with the user turn to answer."""
    if messages is not None:
        return prompt_of({"messages": messages}, line)
    return prompt_of({"prompt": text}, line)


# --- scored completions --------------------------------------------------------------------------------------------

def scored_row(record: dict, line: int, annotator: str, score_key: str | None) -> RankingRow:
    """K completions with a score each: one ranking, the best score first, equal scores tied."""
    text, messages = prompt_of({"prompt": record.get("prompt", record.get("instruction")), "messages": record.get("messages")}, line)
    completions = record.get("completions")
    if not isinstance(completions, list) or not MIN_K <= len(completions) <= MAX_K:
        raise BadImportFile(line, f"'completions' must be a list of {MIN_K} to {MAX_K} completions")
    if "scores" in record:
        scores = record["scores"]
        if not isinstance(scores, list) or len(scores) != len(completions):
            raise BadImportFile(line, f"'scores' must be a list of {len(completions)} numbers, one per completion")
        texts, models = [completion_text(c, line) for c in completions], None
        scores = [_score(s, f"score {i + 1}", line) for i, s in enumerate(scores)]
    else:
        texts, models, scores = [], [], []
        for i, c in enumerate(completions):
            if not isinstance(c, dict):
                raise BadImportFile(line, "a scored completion is an object with 'response' (or 'text') and its score")
            texts.append(completion_text(c.get("response", c.get("text")), line))
            models.append(_text_or_none(c.get("model")))
            scores.append(_score(_score_of(c, score_key or "overall_score"), f"completion {i + 1}'s {score_key or 'overall_score'}",
                                 line))
        models = models if any(models) else None
    ranking = [[i for i, s in enumerate(scores) if s == level] for level in sorted(set(scores), reverse=True)]
    return RankingRow(text=text, messages=messages, completions=texts, ranking=ranking, annotator=_annotator(record, line, annotator),
                      models=models)


def _score_of(completion: dict, key: str):
    if key in completion:
        return completion[key]
    rating = (completion.get("annotations") or {}).get(key)
    return rating.get("Rating") if isinstance(rating, dict) else rating


def _score(value, what: str, line: int) -> float:
    """A score as a number (UltraFeedback writes ratings as text: "4"); "N/A", text or nothing is refused."""
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number != number or abs(number) == float("inf"):
        raise BadImportFile(line, f"{what} is {value!r}, not a number: choose another aspect with --score-key, or "
                                  "leave the item out with --skip-invalid"[:300])
    return number


# --- Chatbot Arena --------------------------------------------------------------------------------------------------

def arena_row(record: dict, line: int, annotator: str) -> RankingRow:
    """One battle: an item of the two models' answers, ranked by the winner (ties kept, "both bad" flagged)."""
    models = [_text_or_none(record.get("model_a")), _text_or_none(record.get("model_b"))]
    if not all(models):
        raise BadImportFile(line, "'model_a' and 'model_b' must name the two models")
    winner = _arena_winner(record, line)
    if "conversation_a" in record:
        (messages_a, answer_a), (messages_b, answer_b) = (_last_answer(record.get(k), k, line)
                                                          for k in ("conversation_a", "conversation_b"))
        if messages_a != messages_b:
            raise BadImportFile(line, "the two conversations differ before their last answers (a multi-turn battle whose "
                                      "earlier answers differ): only the last turn of a shared conversation can be ranked")
        text, messages = _prompt(None, messages_a, line)
    else:
        prompt, answer_a, answer_b = (_single_turn(record.get(k), k, line) for k in ("prompt", "response_a", "response_b"))
        text, messages = _prompt(prompt, None, line)
    return RankingRow(text=text, messages=messages, completions=[completion_text(answer_a, line), completion_text(answer_b, line)],
                      ranking=ARENA_WINNERS[winner], annotator=_annotator(record, line, annotator, key="judge"), models=models,
                      flags=["all are bad"] if winner == "tie (bothbad)" else [], created_at=_unix_time(record.get("tstamp"), line))


def _arena_winner(record: dict, line: int) -> str:
    if "winner" in record:
        winner = record["winner"]
        if winner not in ARENA_WINNERS:
            raise BadImportFile(line, f"'winner' must be one of {', '.join(ARENA_WINNERS)}, got {winner!r}"[:300])
        return winner
    marks = {k: record.get(f"winner_{k}") for k in ("model_a", "model_b", "tie")}  # the 55k competition's columns
    chosen = [k for k, v in marks.items() if v in (1, "1", True)]
    if len(chosen) != 1:
        raise BadImportFile(line, "exactly one of winner_model_a, winner_model_b and winner_tie must be 1")
    return chosen[0]


def _last_answer(value, name: str, line: int) -> tuple[list[dict], str]:
    """(the conversation before the last answer, the last answer) of a battle's conversation."""
    messages = _trl_prompt_messages(value, line, name)
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise BadImportFile(line, f"'{name}' must end with the model's answer (an assistant message)")
    return messages[:-1], messages[-1]["content"]


def _single_turn(value, name: str, line: int) -> str:
    """A flat battle's text; the 55k competition writes each as a JSON list of turns: one turn only."""
    if isinstance(value, str) and value.startswith("["):
        try:
            turns = json.loads(value)
        except ValueError:
            turns = None
        if isinstance(turns, list) and all(isinstance(t, str) or t is None for t in turns):
            if len(turns) != 1:
                raise BadImportFile(line, f"'{name}' holds {len(turns)} turns: only single-turn battles can be ranked")
            value = turns[0] or ""
    if not isinstance(value, str):
        raise BadImportFile(line, f"'{name}' must be text")
    return value


def _unix_time(value, line: int) -> str | None:
    if value is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc).isoformat(timespec="milliseconds")
    except (TypeError, ValueError, OverflowError, OSError):
        raise BadImportFile(line, f"'tstamp' must be a Unix time in seconds, got {value!r}"[:300]) from None


# --- OpenAssistant --------------------------------------------------------------------------------------------------

def _oasst(records: list, annotator: str) -> Parsed:
    """Every prompter message with 2+ ranked assistant replies: an item, its prompt the conversation up to it."""
    parsed, messages, lines = Parsed(), {}, {}
    for line, record, raw in records:
        if isinstance(record, BadImportFile):
            parsed.refused.append(_refusal(record, line, raw))
            continue
        try:
            for message in _oasst_messages(record, line):
                messages[message["message_id"]], lines[message["message_id"]] = message, line
        except BadImportFile as error:
            parsed.refused.append(_refusal(error, line, raw))
    children: dict[str, list[dict]] = {}
    for message in messages.values():
        children.setdefault(message.get("parent_id"), []).append(message)
    for message_id, message in messages.items():
        replies = [m for m in children.get(message_id, []) if m["role"] == "assistant" and m.get("rank") is not None
                   and not m.get("deleted")]
        if message["role"] != "prompter" or len(replies) < MIN_K or message.get("deleted"):
            continue
        line = lines[message_id]
        try:
            parsed.append(_oasst_row(message, replies[:MAX_K] if len(replies) > MAX_K else replies, messages, line, annotator))
        except BadImportFile as error:
            parsed.refused.append(_refusal(error, line, json.dumps(message, ensure_ascii=False)[:10_000]))
    return parsed


def _oasst_messages(record: dict, line: int) -> list[dict]:
    """A flat message row as it is, or every message of a nested tree (`prompt` with `replies`)."""
    if isinstance(record.get("prompt"), dict):
        found, stack = [], [(record["prompt"], None)]
        while stack:
            node, parent = stack.pop()
            found.append(_oasst_message({**node, "parent_id": parent}, line))
            stack.extend((reply, node.get("message_id")) for reply in node.get("replies") or [])
        return found
    return [_oasst_message(record, line)]


def _oasst_message(record: dict, line: int) -> dict:
    """One message, its CSV spellings read too (rank "0.0" or "", deleted "False", no parent "")."""
    if not isinstance(record.get("message_id"), str) or record.get("role") not in ROLES_OASST \
            or not isinstance(record.get("text"), str):
        raise BadImportFile(line, "an OpenAssistant message needs 'message_id', 'role' (prompter or assistant) and 'text'")
    rank, deleted = record.get("rank"), record.get("deleted")
    if isinstance(rank, str):
        try:
            rank = float(rank) if rank.strip() else None
        except ValueError:
            pass
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, (int, float)) or rank != rank):
        raise BadImportFile(line, f"'rank' must be a number or null, got {rank!r}"[:300])
    return {"message_id": record["message_id"], "parent_id": record.get("parent_id") or None, "role": record["role"],
            "text": record["text"], "rank": rank, "deleted": deleted in (True, "True", "true", 1, "1")}


def _oasst_row(message: dict, replies: list[dict], messages: dict, line: int, annotator: str) -> RankingRow:
    chain, node = [], message
    while node is not None:
        chain.append({"role": ROLES_OASST[node["role"]], "content": node["text"]})
        parent = node.get("parent_id")
        if parent is not None and parent not in messages:
            raise BadImportFile(line, f"message {node['message_id']}'s parent {parent} is not in the file: its "
                                      "conversation cannot be rebuilt")
        node = messages.get(parent) if parent is not None else None
    text, conversation_messages = _prompt(None, chain[::-1], line)
    ranks = [r["rank"] for r in replies]
    ranking = [[i for i, r in enumerate(ranks) if r == level] for level in sorted(set(ranks))]  # rank 0: the best
    return RankingRow(text=text, messages=conversation_messages, completions=[completion_text(r["text"], line) for r in replies],
                      ranking=ranking, annotator=annotator)


def _refusal(error: BadImportFile, line: int, raw: str) -> Refusal:
    return Refusal(error.line or line, error.problem, raw)


# --- shared ---------------------------------------------------------------------------------------------------------

def _annotator(record: dict, line: int, default: str, key: str = "annotator") -> str:
    value = record.get(key)
    return annotator_name(value, line) if isinstance(value, str) and value.strip() else annotator_name(default, line)


def _text_or_none(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _optional_time(value, line: int) -> str | None:
    return _created_at(value, line) if isinstance(value, str) and value else None


def import_read(db, result: Read, prompt_set: str, actor=None) -> dict:
    """Store what `read` found: completions as items; every other format as items and rankings. `actor`: the admin
    asking (None: the command line)."""
    if result.fmt == "completions":
        counts = importing.import_completions(db, result.rows, prompt_set, actor=actor)
    else:
        counts = importing.import_rankings(db, result.rows, prompt_set, actor=actor)
    return {"format": result.fmt, **counts, **({"pairs_left_out": len(result.skipped)} if result.skipped else {})}
