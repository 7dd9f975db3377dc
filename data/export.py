"""Export preference data in the formats TRL and Hugging Face `datasets` load as-is.

Kinds:
- `pairs`: one row per comparison with `prompt`, `chosen`, `rejected` (TRL's RewardTrainer
  and DPOTrainer columns) plus provenance. When prompts are conversations, TRL's conversational
  format: `prompt` a list of {role, content} messages, `chosen`/`rejected` one assistant message each
  (option `conversational`: auto, the default, picks it when any exported prompt is a conversation).
- `rankings`: one row per ranking with the completions and the ordered groups, ties kept, the
  prompt as text and as `messages`. Importing it into an empty database reproduces the same items and comparisons.
Formats: jsonl, csv, parquet.

Exports stream: rows are read CHUNK_ROWS at a time and written as they come (JSONL line by line,
CSV under one header, Parquet one row group per chunk with one fixed schema), so memory stays
bounded at any size. Also a background job, or from the command line:
    python -m data.export --kind pairs --format parquet --out pairs.parquet
"""

import csv
import dataclasses
import datetime
import functools
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlite_utils import Database

from data import agreement, conversation, jobs, quality
from data.names import name_list
from data.rankings import tie_count
from data.prompt_sets import WANTED
from data.review import EXCLUDED_FROM_TRAINING
from data.store import from_json
from data.versions import process_alive

KINDS = ("pairs", "rankings")
CONVERSATIONAL = ("auto", "yes", "no")  # pairs as TRL's conversational format: when a prompt is a conversation, always, never
FORMATS = ("jsonl", "csv", "parquet")  # files
DATASET = "dataset"  # a folder that `datasets.load_dataset(folder)` loads: data/train.parquet and a dataset card
CHUNK_ROWS = 20_000  # rows per SQL fetch and per Parquet row group
# What one download through the app may hold in the server's memory (Streamlit serves a download from memory, it
# cannot stream one): a larger export is written to a file by a job and copied from the server.
DOWNLOAD_LIMIT_BYTES = 200_000_000
CONSENSUS_CACHE = 50_000  # distinct sets of rankings whose consensus one export remembers
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell that starts so (OWASP CSV injection)

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_QUALITY_COLUMNS = [("annotator_agreement", pa.float64()), ("annotator_agreement_pairs", pa.int64()),  # what it rests on
                    ("annotator_gold_accuracy", pa.float64()), ("annotator_gold_rankings", pa.int64()), ("is_gold", pa.bool_())]
SCHEMAS = {  # one fixed schema per kind: every Parquet row group, and the columns of every format
    "pairs": pa.schema([
        ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()), ("annotator", pa.string()),
        ("ranking_id", pa.int64()), ("item_id", pa.int64()), ("margin", pa.int64()), ("ties_in_ranking", pa.int64()),
        ("created_at", pa.string()), ("guideline_version", pa.int64()), ("prompt_set", pa.string()), ("chosen_generator", pa.string()),
        ("rejected_generator", pa.string()), *_QUALITY_COLUMNS]),
    "rankings": pa.schema([
        ("ranking_id", pa.int64()), ("item_id", pa.int64()), ("annotator", pa.string()), ("prompt_set", pa.string()),
        ("prompt", pa.string()), ("messages", MESSAGES), ("completions", pa.list_(pa.string())), ("models", pa.list_(pa.string())),
        ("ranking", pa.list_(pa.list_(pa.int64()))), ("ties", pa.int64()), ("display_order", pa.list_(pa.int64())),
        ("flags", pa.list_(pa.string())), ("comment", pa.string()), ("seconds", pa.float64()), ("created_at", pa.string()),
        ("guideline_version", pa.int64()), ("review", pa.string()), ("review_reason", pa.string()),
        ("consensus_strength", pa.list_(pa.float64())), ("consensus_low", pa.list_(pa.float64())),
        ("consensus_high", pa.list_(pa.float64())), *_QUALITY_COLUMNS]),
}
CONVERSATIONAL_PAIRS = SCHEMAS["pairs"].set(0, pa.field("prompt", MESSAGES)).set(1, pa.field("chosen", MESSAGES)) \
    .set(2, pa.field("rejected", MESSAGES))
# NOT INDEXED: rankings are read by rowid range, so ORDER BY r.id needs no sort and each page costs only
# its own rows (with an index on a filter column, SQLite would sort every match again for every page).
UNFILTERED = "r.skipped = 0"  # the clause of an export without filters
DEFAULT_PAIRS = f"{UNFILTERED} AND NOT {EXCLUDED_FROM_TRAINING}"  # the pairs export without filters
_FROM = {
    "pairs": """FROM rankings r NOT INDEXED JOIN comparisons c ON c.ranking_id = r.id JOIN annotators a ON a.id = r.annotator_id
                JOIN items i ON i.id = r.item_id JOIN prompts p ON p.id = i.prompt_id""",
    "rankings": """FROM rankings r NOT INDEXED JOIN annotators a ON a.id = r.annotator_id
                   JOIN items i ON i.id = r.item_id JOIN prompts p ON p.id = i.prompt_id""",
}
# Keyset pages: each query resumes after the last row's key, so no cursor stays open between pages
# (a job writes its progress on the same connection meanwhile).
_PAIRS_PAGE = """SELECT p.text, cc.text, rc.text, a.name, r.id, r.item_id, c.margin, r.groups, r.created_at, p.prompt_set,
                        COALESCE(cv.name, cc.model_name), COALESCE(rv.name, rc.model_name), p.messages, r.guideline_version, c.id
                 {from_}
                 JOIN completions cc ON cc.id = c.chosen_id JOIN completions rc ON rc.id = c.rejected_id
                 LEFT JOIN model_versions cv ON cv.id = cc.generator_version_id
                 LEFT JOIN model_versions rv ON rv.id = rc.generator_version_id
                 WHERE {clause} AND r.id >= ? AND (r.id > ? OR c.id > ?) ORDER BY r.id, c.id LIMIT ?"""
_RANKINGS_PAGE = """SELECT r.id, r.item_id, a.name, p.prompt_set, p.text, r.groups, r.display_order, r.flags, r.comment,
                           r.seconds, r.created_at, p.messages, r.guideline_version, r.review, r.review_reason
                    {from_} WHERE {clause} AND r.id > ? ORDER BY r.id LIMIT ?"""


@dataclass
class ExportFilter:
    since: str | None = None  # first day included, YYYY-MM-DD
    until: str | None = None  # last day included, YYYY-MM-DD
    annotators: list[str] | None = None
    prompt_sets: list[str] | None = None
    exclude_annotators: list[str] | None = None
    complete_only: bool = False  # only items with all the rankings their prompt set wants
    min_agreement: float | None = None  # annotators whose agreement with the others is at least this
    min_gold_accuracy: float | None = None  # annotators who pass at least this share of their gold items
    keep_excluded: bool = False  # pairs: also rejected rankings and those flagged all bad or offensive (data.review)

    def where(self, kind: str = "pairs") -> tuple[str, list]:
        """SQL conditions on rankings r, annotators a, prompts p, items i (the quality bar apart: see `passes`). Pairs
        leave out what the review excluded from training unless `keep_excluded`; rankings keep it, with its columns."""
        clauses, params = [UNFILTERED], []
        if kind == "pairs" and not self.keep_excluded:
            clauses.append(f"NOT {EXCLUDED_FROM_TRAINING}")
        if self.exclude_annotators:
            clauses.append(f"a.name NOT IN ({', '.join('?' * len(self.exclude_annotators))})")
            params.extend(self.exclude_annotators)
        if self.complete_only:
            clauses.append(f"i.n_rankings >= (SELECT {WANTED} FROM prompt_sets s WHERE s.name = p.prompt_set)")
        if self.since:
            clauses.append("r.created_at >= ?")
            params.append(_day(self.since).isoformat())
        if self.until:
            clauses.append("r.created_at < ?")
            params.append((_day(self.until) + datetime.timedelta(days=1)).isoformat())
        for column, values in (("a.name", self.annotators), ("p.prompt_set", self.prompt_sets)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        return " AND ".join(clauses), params

    def passes(self, agreement: float | None, gold_accuracy: float | None) -> bool:
        """Whether an annotator clears the quality bar: no agreement figure counts as 0, no gold seen as not failed."""
        return ((self.min_agreement is None or (agreement or 0) >= self.min_agreement)
                and (self.min_gold_accuracy is None or (1 if gold_accuracy is None else gold_accuracy) >= self.min_gold_accuracy))


@dataclass
class ExportConfig:
    """Export pairs or rankings to a file, streamed chunk by chunk (a background job, or `python -m data.export`)."""

    kind: str = field(default="pairs", metadata={"help": "pairs (TRL's prompt / chosen / rejected) or rankings (ties kept)"})
    format: str = field(default="jsonl", metadata={"help": "jsonl, csv, parquet, or dataset: a folder with data/train.parquet "
                                                              "and a dataset card that datasets.load_dataset(folder) reads"})
    out: str = field(default="", metadata={"help": "file to write, or for a dataset a new folder (required)"})
    since: str = field(default="", metadata={"help": "first day included, YYYY-MM-DD; empty: from the start"})
    until: str = field(default="", metadata={"help": "last day included, YYYY-MM-DD; empty: up to now"})
    annotators: list[str] = field(default_factory=list, metadata={"help": "annotators to export, a,b or a JSON list; empty: all"})
    prompt_sets: list[str] = field(default_factory=list, metadata={"help": "prompt sets to export, a,b or a JSON list; empty: all"})
    exclude_annotators: list[str] = field(default_factory=list, metadata={"help": "annotators to leave out, a,b or a JSON list"})
    complete_only: bool = field(default=False, metadata={"help": "only items with all the rankings their prompt set wants"})
    keep_excluded: bool = field(default=False, metadata={
        "help": "pairs: also rejected rankings and those flagged 'all are bad' or 'offensive/unsafe' (left out by default)"})
    min_agreement: float | None = field(default=None, metadata={"help": "only annotators whose agreement with the others is at least this"})
    min_gold_accuracy: float | None = field(default=None, metadata={"help": "only annotators who pass at least this share of their gold items"})
    conversational: str = field(default="auto", metadata={
        "help": "pairs only: prompt/chosen/rejected as lists of messages (TRL's conversational format): "
                "auto (when any exported prompt is a conversation), yes or no"})

    def __post_init__(self):
        self.annotators, self.prompt_sets = name_list(self.annotators), name_list(self.prompt_sets)
        self.exclude_annotators = name_list(self.exclude_annotators)
        _check_kind(self.kind)
        _check_format(self.format)
        _check_conversational(self.conversational)
        if not self.out:
            raise ValueError("say where to write the export, e.g. --out pairs.parquet")
        self.export_filter().where()  # bad dates fail before the job starts

    def export_filter(self) -> ExportFilter:
        return ExportFilter(self.since or None, self.until or None, self.annotators or None, self.prompt_sets or None,
                            self.exclude_annotators or None, self.complete_only, self.min_agreement, self.min_gold_accuracy,
                            self.keep_excluded)


def _day(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"dates are YYYY-MM-DD, got {text!r}") from None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown export kind {kind!r}: use one of {KINDS}")


def _check_format(fmt: str) -> None:
    if fmt not in (*FORMATS, DATASET):
        raise ValueError(f"unknown export format {fmt!r}: use one of {(*FORMATS, DATASET)}")


def _check_conversational(mode: str) -> None:
    if mode not in CONVERSATIONAL:
        raise ValueError(f"conversational must be one of {CONVERSATIONAL}, got {mode!r}")


def _conversational(db: Database, kind: str, clause: str, params: list, mode: str) -> bool:
    """Whether pairs are written as messages: `yes`, or `auto` and some exported prompt is a conversation."""
    _check_conversational(mode)
    if kind != "pairs" or mode == "no":
        return False
    if mode == "yes":
        return True
    # From the conversations to their rankings: conversations are few next to rankings, and often none at all.
    return bool(db.execute(
        f"""SELECT EXISTS (SELECT 1 FROM prompts p JOIN items i ON i.prompt_id = p.id JOIN rankings r ON r.item_id = i.id
                           JOIN annotators a ON a.id = r.annotator_id WHERE p.messages IS NOT NULL AND {clause})""",
        params).fetchone()[0])


def schema(kind: str, conversational: bool = False) -> pa.Schema:
    """The columns of an export; conversational pairs hold lists of messages where plain pairs hold text."""
    return CONVERSATIONAL_PAIRS if kind == "pairs" and conversational else SCHEMAS[kind]


def write_export(db: Database, kind: str, fmt: str, out: str | os.PathLike | BinaryIO, where: ExportFilter = ExportFilter(),
                 on_progress: Callable[[int, int], None] | None = None, conversational: str = "auto") -> int:
    """Stream the export into `out`, a path or a binary file, chunk by chunk; returns the row count.

    A path is written under a temporary name and renamed when complete, so a failed or cancelled
    export never leaves a file that looks whole. `on_progress(done_rows, total_rows)` runs after each chunk.
    """
    _check_kind(kind)
    _check_format(fmt)
    if fmt == DATASET:
        if not isinstance(out, (str, os.PathLike)):
            raise ValueError("a dataset export is a folder: give a path (or use dataset_zip for a download)")
        return write_dataset(db, kind, Path(out), where, on_progress, conversational)
    if isinstance(out, (str, os.PathLike)):
        return _write_file(db, kind, fmt, Path(out), where, on_progress, conversational)
    annotators = annotator_quality(db)
    clause, params = _conditions(db, where, annotators, kind)
    as_messages = _conversational(db, kind, clause, params, conversational)
    chunks = _chunks(db, kind, clause, params, annotators, CHUNK_ROWS, as_messages)
    if on_progress:
        chunks = _reporting(chunks, _count(db, kind, clause, params), on_progress)
    return _WRITERS[fmt](chunks, out, schema(kind, as_messages))


def _write_file(db: Database, kind: str, fmt: str, path: Path, where: ExportFilter, on_progress, conversational: str) -> int:
    sweep_partials(path.parent)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=path.parent)  # one per writer
    partial = Path(partial)
    try:
        with os.fdopen(handle, "wb") as file:
            rows = write_export(db, kind, fmt, file, where, on_progress, conversational)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return rows


def sweep_partials(folder: Path) -> int:
    """Remove what killed export writers left (`.NAME.PID.XXXX.partial`, the PID no longer running); returns how many."""
    swept = 0
    for leftover in Path(folder).glob(".*.partial"):
        pid = next((int(part) for part in reversed(leftover.name.split(".")[:-2]) if part.isdigit()), None)
        if pid is None or process_alive(pid):
            continue
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        swept += 1
    return swept


def write_dataset(db: Database, kind: str, folder: Path, where: ExportFilter = ExportFilter(), on_progress=None,
                  conversational: str = "auto") -> int:
    """A Hugging Face dataset folder: data/train.parquet and a README.md dataset card (counts, provenance, agreement,
    the filters used, a license line for the admin to fill). Written beside and renamed when whole; never over a folder."""
    if folder.exists():
        raise ValueError(f"{folder} exists already: choose a new folder for the dataset (nothing is overwritten)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(folder.parent)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}.", suffix=".partial", dir=folder.parent))
    try:
        (partial / "data").mkdir()
        rows = _write_file(db, kind, "parquet", partial / "data" / "train.parquet", where, on_progress, conversational)
        (partial / "README.md").write_text(dataset_card(db, kind, where, conversational, rows, folder.name), encoding="utf-8")
        os.replace(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return rows


class ExportTooLarge(ValueError):
    """An export past DOWNLOAD_LIMIT_BYTES asked for as a download: the message says to write it to a file."""


class _CappedBuffer(io.BytesIO):
    """Memory for a download that refuses to grow past DOWNLOAD_LIMIT_BYTES."""

    def write(self, data) -> int:
        if self.tell() + len(data) > DOWNLOAD_LIMIT_BYTES:
            raise ExportTooLarge(f"this export is larger than the {DOWNLOAD_LIMIT_BYTES / 1e6:,.0f} MB a download through "
                                 "the app may hold: write it to a file (a background job) and copy it from the server")
        return super().write(data)


def downloadable(path: Path) -> bool:
    """Whether a written export (a file, or a dataset folder) is small enough to download through the app."""
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return size <= DOWNLOAD_LIMIT_BYTES


def dataset_zip(db: Database, kind: str, where: ExportFilter = ExportFilter(), conversational: str = "auto",
                name: str = "dataset") -> bytes:
    """The dataset folder as a zip, for a direct download of a small export."""
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(db, kind, Path(tmp) / name, where, conversational=conversational)
        return zip_folder(Path(tmp) / name)


def zip_folder(folder: Path) -> bytes:
    """A folder as a zip whose entries start with the folder's name, in at most DOWNLOAD_LIMIT_BYTES of memory."""
    buffer = _CappedBuffer()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()


def dataset_card(db: Database, kind: str, where: ExportFilter, conversational: str, rows: int, name: str) -> str:
    """The README.md of a dataset export: YAML metadata `load_dataset` reads, then what the data is and how it was made."""
    annotators = annotator_quality(db)
    clause, params = _conditions(db, where, annotators, kind)
    rankings, people, items_, prompts, sets = db.execute(
        f"""SELECT COUNT(*), COUNT(DISTINCT r.annotator_id), COUNT(DISTINCT r.item_id), COUNT(DISTINCT i.prompt_id),
                   COUNT(DISTINCT p.prompt_set) {_FROM["rankings"]} WHERE {clause}""", params).fetchone()
    models = db.execute(
        f"""SELECT COALESCE(v.name, c.model_name, 'unknown'), COUNT(*) FROM completions c
            LEFT JOIN model_versions v ON v.id = c.generator_version_id
            WHERE c.item_id IN (SELECT r.item_id {_FROM["rankings"]} WHERE {clause}) GROUP BY 1 ORDER BY 2 DESC""",
        params).fetchall()
    summary = quality.agreement_summary(db)
    as_messages = _conversational(db, kind, clause, params, conversational)
    filters = {k: v for k, v in dataclasses.asdict(where).items() if v not in (None, False, [], "")}
    fmt = lambda value: "n/a" if value is None else f"{value:.3f}"  # noqa: E731
    what = ("one row per comparison: `prompt`, `chosen`, `rejected`" + (" as lists of messages (TRL's conversational "
            "preference format)" if as_messages else " as text (TRL's standard preference format)")
            if kind == "pairs" else "one row per ranking of K completions, ties kept (`ranking`: groups of indices into "
            "`completions`, best first)")
    return "\n".join([
        "---",
        "# license: fill this in before sharing the dataset (e.g. cc-by-4.0); it depends on your prompts, models and annotators",
        "license: null",
        "tags: [rlhf, preference, human-feedback" + (", dpo, reward-modeling" if kind == "pairs" else ", rankings") + "]",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/train.parquet",
        "---",
        "",
        f"# {name}",
        "",
        f"Human preference data exported from the RLHF loop app on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: "
        f"{what}.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'data = load_dataset("{name}")  # this folder',
        "```",
        "",
        "## Counts",
        "",
        "| | |", "|---|---|",
        f"| rows | {rows:,} |", f"| rankings | {rankings:,} |", f"| annotators | {people:,} |", f"| items | {items_:,} |",
        f"| prompts | {prompts:,} |", f"| prompt sets | {sets:,} |",
        "",
        "## Provenance",
        "",
        "Completions of the exported items, by model (generator version, remote model or imported model name):",
        "",
        *[f"- {inert(model)}: {n:,}" for model, n in models],
        "",
        "Each row keeps its annotator, ranking, item, prompt set, guideline version and time. Annotator names are the "
        "app's account names: replace them before sharing if they identify people.",
        "",
        "## Agreement (all rankings in the store, not only the exported ones)",
        "",
        f"- pairwise agreement on pairs both annotators ordered: {fmt(summary['pairwise_agreement'])} "
        f"({summary['pairs_both_ordered']:,} pairs, {summary['shared_items']:,} items ranked by two or more)",
        f"- mean Kendall tau-b: {fmt(summary['kendall_tau_b'])}",
        f"- Krippendorff's alpha (ordinal): {fmt(summary['krippendorff_alpha'])}",
        "",
        "## Filters used",
        "",
        *([f"- {k}: {filter_text(v)}" for k, v in filters.items()] or ["- none: every non-skipped ranking"]),
        "",
        "## Columns",
        "",
        ", ".join(f"`{c}`" for c in schema(kind, as_messages).names),
        "",
    ])


def inert(text: str, limit: int = 200) -> str:
    r"""A name from the data (a model named in an imported file, an annotator) as plain text in the card's Markdown: one
    line, cut to `limit`, every inline Markdown and HTML character escaped, so it cannot add an image, a link or a
    section. The text always follows "- label: " on its line, so line-start marks (#, -, +, 1.) stay plain.

    >>> print(inert("![x](h.png)\n## License"))
    \!\[x\]\(h.png\) ## License
    """
    line = " ".join(text.split())[:limit]
    return re.sub(r"([\\`*_{}\[\]()!|<>~&])", r"\\\1", line)


def filter_text(value) -> str:
    r"""One filter's value in the card: a list as its names joined by commas, each inert.

    >>> print(filter_text(["set-a", "b_2"]))
    set-a, b\_2
    """
    return ", ".join(inert(str(v)) for v in value) if isinstance(value, list) else inert(str(value))


def count_rows(db: Database, kind: str, where: ExportFilter = ExportFilter()) -> int:
    """Rows the export will have, quality bar included (one SQL count)."""
    _check_kind(kind)
    return _count(db, kind, *_conditions(db, where, annotator_quality(db), kind))


def preview(db: Database, kind: str, where: ExportFilter = ExportFilter(), rows: int = 50,
            conversational: str = "auto") -> pd.DataFrame:
    """The first `rows` rows of the export, as the export writes them (only those rows are read)."""
    return export_frame(db, kind, where, conversational, rows=rows)


def export_bytes(db: Database, kind: str, fmt: str, where: ExportFilter = ExportFilter(), conversational: str = "auto") -> bytes:
    """The whole export in memory, at most DOWNLOAD_LIMIT_BYTES: for downloads and tests (write_export streams to a file)."""
    buffer = _CappedBuffer()
    write_export(db, kind, fmt, buffer, where, conversational=conversational)
    return buffer.getvalue()


def export_frame(db: Database, kind: str, where: ExportFilter = ExportFilter(), conversational: str = "auto",
                 rows: int | None = None) -> pd.DataFrame:
    """The whole export (or its first `rows` rows) as one frame: for small exports only (write_export scales)."""
    _check_kind(kind)
    annotators = annotator_quality(db)
    clause, params = _conditions(db, where, annotators, kind)
    as_messages = _conversational(db, kind, clause, params, conversational)
    chunks = _chunks(db, kind, clause, params, annotators, rows or CHUNK_ROWS, as_messages)
    records = next(chunks) if rows else [r for chunk in chunks for r in chunk]
    return pd.DataFrame(records, columns=schema(kind, as_messages).names)


def _write_jsonl(chunks: Iterator[list[dict]], out: BinaryIO, schema: pa.Schema) -> int:
    rows = 0
    for records in chunks:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        rows += len(records)
    return rows


def _write_csv(chunks: Iterator[list[dict]], out: BinaryIO, schema: pa.Schema) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    # RFC 4180 line ends; every cell quoted, so a spreadsheet that splits on ';' or tabs cannot find a formula mid-cell
    writer = csv.writer(text, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writerow(schema.names)
    rows = 0
    for records in chunks:
        writer.writerows([_csv_cell(value) for value in record.values()] for record in records)
        rows += len(records)
    text.detach()  # leaves `out` open for its owner
    return rows


def _write_parquet(chunks: Iterator[list[dict]], out: BinaryIO, schema: pa.Schema) -> int:
    rows = 0
    with pq.ParquetWriter(out, schema) as writer:
        for records in chunks:
            if records:
                writer.write_table(pa.Table.from_pylist(records, schema=schema))
            rows += len(records)
    return rows


_WRITERS = {"jsonl": _write_jsonl, "csv": _write_csv, "parquet": _write_parquet}


def _csv_cell(value):
    """Lists as JSON text, and a quote before text that a spreadsheet would run as a formula (CSV only).

    >>> _csv_cell("=HYPERLINK(1)"), _csv_cell("-1"), _csv_cell("a = b"), _csv_cell(["=x"]), _csv_cell(-1)
    ("'=HYPERLINK(1)", "'-1", 'a = b', '["=x"]', -1)
    """
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _reporting(chunks: Iterator[list[dict]], total: int, on_progress: Callable[[int, int], None]) -> Iterator[list[dict]]:
    """The same chunks; after each one is written, on_progress(rows so far, total)."""
    done = 0
    for records in chunks:
        yield records
        done += len(records)
        on_progress(done, total)


def annotator_quality(db: Database) -> dict[str, dict[str, float | None]]:
    """Per quality column, each annotator's figure: agreement with the others and the pairs it rests on, gold accuracy
    and the gold rankings it rests on (an agreement of 0.0 on 5 pairs is no verdict)."""
    table = quality.annotator_table(db)
    return {"annotator_agreement": {r["annotator"]: r["agreement_with_others"] for r in table},
            "annotator_agreement_pairs": {r["annotator"]: r["agreement_pairs"] for r in table},
            "annotator_gold_accuracy": {r["annotator"]: r["gold_accuracy"] for r in table},
            "annotator_gold_rankings": {r["annotator"]: r["gold_rankings"] for r in table}}


def _conditions(db: Database, where: ExportFilter, annotators: dict, kind: str) -> tuple[str, list]:
    """The filter as SQL; the quality bar becomes the names of the annotators who clear it (few, unlike their rows)."""
    clause, params = where.where(kind)
    if where.min_agreement is None and where.min_gold_accuracy is None:
        return clause, params
    agreement, accuracy = annotators["annotator_agreement"], annotators["annotator_gold_accuracy"]
    names = [name for (name,) in db.execute("SELECT name FROM annotators") if where.passes(agreement.get(name), accuracy.get(name))]
    return f"{clause} AND a.name IN (SELECT value FROM json_each(?))", [*params, json.dumps(names)]


def _any_excluded(db: Database) -> bool:
    """Whether any ranking is rejected or flagged bad (the partial indexes on rejected and flagged rankings)."""
    return db.execute(f"""SELECT EXISTS (SELECT 1 FROM rankings r WHERE r.review = 'rejected')
                                 OR EXISTS (SELECT 1 FROM rankings r WHERE r.flags != '[]' AND {EXCLUDED_FROM_TRAINING})""").fetchone()[0] == 1


_COUNT_ALL = {"pairs": "SELECT COUNT(*) FROM comparisons",  # every comparison comes from a ranking, never a skip
              "rankings": "SELECT COUNT(*) FROM rankings WHERE skipped = 0"}


def _count(db: Database, kind: str, clause: str, params: list) -> int:
    if clause == UNFILTERED or (clause == DEFAULT_PAIRS and not _any_excluded(db)):  # no joins: 10 ms instead of 1.8 s at 2.5M pairs
        return db.execute(_COUNT_ALL[kind]).fetchone()[0]
    return db.execute(f"SELECT COUNT(*) {_FROM[kind]} WHERE {clause}", params).fetchone()[0]


def _pages(db: Database, sql: str, params: list, chunk: int, key: Callable[[tuple | None], list]) -> Iterator[list[tuple]]:
    """The rows of a keyset query, `chunk` per fetch; at least one page, maybe empty. key(None) starts, key(row) resumes."""
    after = key(None)
    while True:
        rows = db.execute(sql, [*params, *after, chunk]).fetchall()
        yield rows
        if not rows or len(rows) < chunk:
            return
        after = key(rows[-1])


def _chunks(db: Database, kind: str, clause: str, params: list, annotators: dict, chunk: int,
            conversational: bool = False) -> Iterator[list[dict]]:
    """The export as records (one dict per row, columns in schema order), `chunk` at a time, in ranking order."""
    gold_items = {item_id for (item_id,) in db.execute("SELECT item_id FROM gold")}
    chunks = (_pair_chunks(db, clause, params, chunk, conversational) if kind == "pairs"
              else _ranking_chunks(db, clause, params, chunk))
    for records in chunks:
        for record in records:
            for column, by_annotator in annotators.items():
                record[column] = by_annotator.get(record["annotator"])
            record["is_gold"] = record["item_id"] in gold_items
        yield records


def _pair_chunks(db: Database, clause: str, params: list, chunk: int, conversational: bool) -> Iterator[list[dict]]:
    sql = _PAIRS_PAGE.format(from_=_FROM["pairs"], clause=clause)
    key = lambda row: [0, 0, 0] if row is None else [row[4], row[4], row[-1]]  # noqa: E731  (ranking id, comparison id)
    for rows in _pages(db, sql, params, chunk, key):
        ties = {groups: tie_count(from_json(groups)) for groups in {row[7] for row in rows}}
        yield [_pair_record(row, ties, conversational) for row in rows]


def _pair_record(row: tuple, ties: dict[str, int], conversational: bool) -> dict:
    (prompt, chosen, rejected, annotator, ranking_id, item_id, margin, groups, created_at, prompt_set, chosen_by, rejected_by,
     messages, guideline_version, _) = row
    if conversational:  # TRL's conversational preference format
        prompt = conversation.as_messages(prompt, messages)
        chosen, rejected = [{"role": "assistant", "content": chosen}], [{"role": "assistant", "content": rejected}]
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "annotator": annotator, "ranking_id": ranking_id,
            "item_id": item_id, "margin": margin, "ties_in_ranking": ties[groups], "created_at": created_at,
            "guideline_version": guideline_version, "prompt_set": prompt_set, "chosen_generator": chosen_by,
            "rejected_generator": rejected_by}


def _ranking_chunks(db: Database, clause: str, params: list, chunk: int) -> Iterator[list[dict]]:
    sql = _RANKINGS_PAGE.format(from_=_FROM["rankings"], clause=clause)
    consensus = functools.lru_cache(maxsize=CONSENSUS_CACHE)(_consensus)  # items ranked alike share it, across pages too
    for rows in _pages(db, sql, params, chunk, lambda row: [0] if row is None else [row[0]]):
        item_ids = json.dumps(sorted({row[1] for row in rows}))
        completions, rankings = _completions_by_item(db, item_ids), _rankings_by_item(db, item_ids)
        yield [_ranking_record(row, *completions[row[1]], consensus(len(completions[row[1]][0]), rankings[row[1]]))
               for row in rows]


def _ranking_record(row: tuple, texts: list[str], models: list[str | None], consensus: dict) -> dict:
    (ranking_id, item_id, annotator, prompt_set, prompt, groups, display_order, flags, comment, seconds, created_at,
     messages, guideline_version, review, review_reason) = row
    groups = from_json(groups)
    return {"ranking_id": ranking_id, "item_id": item_id, "annotator": annotator, "prompt_set": prompt_set, "prompt": prompt,
            "messages": conversation.as_messages(prompt, messages), "completions": texts, "models": models, "ranking": groups,
            "ties": tie_count(groups), "display_order": from_json(display_order), "flags": from_json(flags), "comment": comment,
            "seconds": seconds, "created_at": created_at, "guideline_version": guideline_version, "review": review,
            "review_reason": review_reason, **consensus}


def _consensus(k: int, rankings: tuple[str, ...]) -> dict:
    """Bradley-Terry strengths of an item's completions from all its rankings (JSON groups), with 95% bootstrap intervals."""
    rows = agreement.bradley_terry_with_intervals([from_json(g) for g in rankings], k, resamples=100)
    return {"consensus_strength": [round(r["strength"], 4) for r in rows],
            "consensus_low": [round(r["low"], 4) for r in rows], "consensus_high": [round(r["high"], 4) for r in rows]}


def _completions_by_item(db: Database, item_ids: str) -> dict[int, tuple[list, list]]:
    """Texts and generator names of the items' completions, in position order; item_ids is a JSON list."""
    by_item: dict[int, tuple[list, list]] = {}
    rows = db.execute(
        """SELECT c.item_id, c.text, COALESCE(v.name, c.model_name) FROM completions c
           LEFT JOIN model_versions v ON v.id = c.generator_version_id
           WHERE c.item_id IN (SELECT value FROM json_each(?)) ORDER BY c.item_id, c.position""", [item_ids])
    for item_id, text, model in rows:
        texts, models = by_item.setdefault(item_id, ([], []))
        texts.append(text)
        models.append(model)
    return by_item


def _rankings_by_item(db: Database, item_ids: str) -> dict[int, tuple[str, ...]]:
    """Every ranking of the items (not only the exported ones), oldest first, as JSON groups."""
    by_item: dict[int, list[str]] = {}
    rows = db.execute("""SELECT item_id, groups FROM rankings WHERE skipped = 0 AND item_id IN (SELECT value FROM json_each(?))
                         ORDER BY id""", [item_ids])
    for item_id, groups in rows:
        by_item.setdefault(item_id, []).append(groups)
    return {item_id: tuple(groups) for item_id, groups in by_item.items()}


def run(db: Database, config: ExportConfig, job: jobs.Job) -> dict:
    """Job body: stream the export into config.out, reporting progress after each chunk."""
    job.log(f"exporting {config.kind} as {config.format} to {config.out}")
    job.phase("writing the export")
    rows = write_export(db, config.kind, config.format, config.out, config.export_filter(),
                        on_progress=lambda done, total: job.progress(done, total, f"{done:,} of {total:,} rows"),
                        conversational=config.conversational)
    job.log(f"wrote {rows:,} rows")
    return {"rows": rows, "file": config.out}


def completions_jsonl(db: Database, prompt_set: str) -> bytes:
    """Items of a prompt set in the completions import format, provenance kept (how data/builtin was made)."""
    lines = []
    for item in db.query(
        "SELECT i.id, p.text, p.messages FROM items i JOIN prompts p ON p.id = i.prompt_id WHERE p.prompt_set = ? ORDER BY i.id",
        [prompt_set],
    ):
        rows = list(db.query(
            """SELECT c.text, c.n_tokens, c.finish_reason, c.seed, c.params, c.gen_seconds, COALESCE(v.name, c.model_name) AS model
               FROM completions c LEFT JOIN model_versions v ON v.id = c.generator_version_id
               WHERE c.item_id = ? ORDER BY c.position""",
            [item["id"]],
        ))
        completions = [{**{k: r[k] for k in ("text", "n_tokens", "finish_reason", "seed")},
                        "params": from_json(r["params"], {}), "gen_seconds": round(r["gen_seconds"] or 0, 3)} for r in rows]
        prompt = {"messages": from_json(item["messages"])} if item["messages"] else {"prompt": item["text"]}
        lines.append(json.dumps({**prompt, "model": rows[0]["model"], "completions": completions}, ensure_ascii=False))
    return "".join(line + "\n" for line in lines).encode()


if __name__ == "__main__":
    raise SystemExit(jobs.job_main("export", ExportConfig, run))
