"""Export preference data in the formats TRL and Hugging Face `datasets` load as-is.

Kinds:
- `pairs`: one row per comparison with `prompt`, `chosen`, `rejected` (TRL's RewardTrainer
  and DPOTrainer columns) plus provenance.
- `rankings`: one row per ranking with the completions and the ordered groups, ties kept.
  Importing it into an empty database reproduces the same comparisons.
Formats: jsonl, csv, parquet.
"""

import datetime
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlite_utils import Database

from data.rankings import tie_count
from data.store import from_json

KINDS = ("pairs", "rankings")
FORMATS = ("jsonl", "csv", "parquet")


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

    def where(self) -> tuple[str, list]:
        """SQL conditions on rankings r, annotators a, prompts p, items i."""
        clauses, params = ["r.skipped = 0"], []
        if self.exclude_annotators:
            clauses.append(f"a.name NOT IN ({', '.join('?' * len(self.exclude_annotators))})")
            params.extend(self.exclude_annotators)
        if self.complete_only:
            clauses.append("i.n_rankings >= (SELECT rankings_wanted FROM prompt_sets WHERE name = p.prompt_set)")
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


def _day(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"dates are YYYY-MM-DD, got {text!r}") from None


def annotator_quality(db: Database) -> pd.DataFrame:
    """Per annotator: agreement with the others and gold accuracy (provenance columns, quality filters)."""
    from data import gold, quality

    table = pd.DataFrame(quality.annotator_table(db), columns=["annotator", "agreement_with_others"])
    accuracy = gold.accuracy_by_annotator(db)
    table["gold_accuracy"] = table["annotator"].map(accuracy)
    return table.rename(columns={"agreement_with_others": "annotator_agreement", "gold_accuracy": "annotator_gold_accuracy"})


def _with_quality(db: Database, frame: pd.DataFrame, where: ExportFilter) -> pd.DataFrame:
    """Add the annotators' quality columns and whether the item is gold; drop rows below the quality bar."""
    frame = frame.merge(annotator_quality(db), on="annotator", how="left")
    gold_items = {row[0] for row in db.execute("SELECT item_id FROM gold")}
    frame["is_gold"] = frame["item_id"].isin(gold_items)
    if where.min_agreement is not None:
        frame = frame[frame["annotator_agreement"].fillna(0) >= where.min_agreement]
    if where.min_gold_accuracy is not None:
        frame = frame[frame["annotator_gold_accuracy"].fillna(1) >= where.min_gold_accuracy]  # no gold seen: not failed
    return frame.reset_index(drop=True)


def pairs_frame(db: Database, where: ExportFilter = ExportFilter()) -> pd.DataFrame:
    clause, params = where.where()
    rows = db.query(
        f"""SELECT p.text AS prompt, cc.text AS chosen, rc.text AS rejected,
                   a.name AS annotator, r.id AS ranking_id, r.item_id, c.margin, r.groups,
                   r.created_at, p.prompt_set,
                   COALESCE(cv.name, cc.model_name) AS chosen_generator,
                   COALESCE(rv.name, rc.model_name) AS rejected_generator
            FROM comparisons c
            JOIN rankings r ON r.id = c.ranking_id
            JOIN annotators a ON a.id = r.annotator_id
            JOIN completions cc ON cc.id = c.chosen_id
            JOIN completions rc ON rc.id = c.rejected_id
            JOIN items i ON i.id = r.item_id
            JOIN prompts p ON p.id = i.prompt_id
            LEFT JOIN model_versions cv ON cv.id = cc.generator_version_id
            LEFT JOIN model_versions rv ON rv.id = rc.generator_version_id
            WHERE {clause} ORDER BY r.id, c.id""",
        params,
    )
    frame = pd.DataFrame(list(rows), columns=[
        "prompt", "chosen", "rejected", "annotator", "ranking_id", "item_id", "margin", "groups",
        "created_at", "prompt_set", "chosen_generator", "rejected_generator"])
    frame.insert(frame.columns.get_loc("groups"), "ties_in_ranking", [tie_count(from_json(g)) for g in frame["groups"]])
    return _with_quality(db, frame.drop(columns="groups"), where)


def rankings_frame(db: Database, where: ExportFilter = ExportFilter()) -> pd.DataFrame:
    clause, params = where.where()
    rankings = list(db.query(
        f"""SELECT r.id AS ranking_id, r.item_id, a.name AS annotator, p.prompt_set, p.text AS prompt,
                   r.groups, r.display_order, r.flags, r.comment, r.seconds, r.created_at
            FROM rankings r
            JOIN annotators a ON a.id = r.annotator_id
            JOIN items i ON i.id = r.item_id
            JOIN prompts p ON p.id = i.prompt_id
            WHERE {clause} ORDER BY r.id""",
        params,
    ))
    completions = _completions_by_item(db, {r["item_id"] for r in rankings})
    consensus = _consensus_by_item(db, {r["item_id"] for r in rankings})
    records = []
    for r in rankings:
        texts, models = completions[r["item_id"]]
        groups = from_json(r["groups"])
        records.append({
            "ranking_id": r["ranking_id"], "item_id": r["item_id"], "annotator": r["annotator"],
            "prompt_set": r["prompt_set"], "prompt": r["prompt"], "completions": texts, "models": models,
            "ranking": groups, "ties": tie_count(groups), "display_order": from_json(r["display_order"]),
            "flags": from_json(r["flags"]), "comment": r["comment"], "seconds": r["seconds"],
            "created_at": r["created_at"], **consensus[r["item_id"]],
        })
    frame = pd.DataFrame(records, columns=[
        "ranking_id", "item_id", "annotator", "prompt_set", "prompt", "completions", "models", "ranking", "ties",
        "display_order", "flags", "comment", "seconds", "created_at", "consensus_strength", "consensus_low", "consensus_high"])
    return _with_quality(db, frame, where)


def _consensus_by_item(db: Database, item_ids: set[int]) -> dict[int, dict]:
    """Bradley-Terry strengths of each item's completions from all its rankings, with 95% bootstrap intervals."""
    from data import agreement

    by_item: dict[int, list] = {}
    for item_id, groups in db.execute("SELECT item_id, groups FROM rankings WHERE skipped = 0 ORDER BY id"):
        if item_id in item_ids:
            by_item.setdefault(item_id, []).append(from_json(groups))
    k_of = dict(db.execute("SELECT item_id, COUNT(*) FROM completions GROUP BY item_id"))
    out = {}
    for item_id in item_ids:
        rows = agreement.bradley_terry_with_intervals(by_item[item_id], k_of[item_id], resamples=100)
        out[item_id] = {"consensus_strength": [round(r["strength"], 4) for r in rows],
                        "consensus_low": [round(r["low"], 4) for r in rows], "consensus_high": [round(r["high"], 4) for r in rows]}
    return out


def _completions_by_item(db: Database, item_ids: set[int]) -> dict[int, tuple[list, list]]:
    by_item: dict[int, tuple[list, list]] = {i: ([], []) for i in item_ids}
    rows = db.execute(
        """SELECT c.item_id, c.text, COALESCE(v.name, c.model_name) FROM completions c
           LEFT JOIN model_versions v ON v.id = c.generator_version_id ORDER BY c.item_id, c.position"""
    )
    for item_id, text, model in rows:
        if item_id in by_item:
            by_item[item_id][0].append(text)
            by_item[item_id][1].append(model)
    return by_item


def export_frame(db: Database, kind: str, where: ExportFilter = ExportFilter()) -> pd.DataFrame:
    if kind not in KINDS:
        raise ValueError(f"unknown export kind {kind!r}: use one of {KINDS}")
    return pairs_frame(db, where) if kind == "pairs" else rankings_frame(db, where)


def frame_to_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "jsonl":
        return frame.to_json(orient="records", lines=True, force_ascii=False).encode() if len(frame) else b""
    if fmt == "csv":
        flat = frame.apply(lambda col: col.map(_json_if_list))
        return flat.to_csv(index=False).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ValueError(f"unknown export format {fmt!r}: use one of {FORMATS}")


def _json_if_list(value):
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value


def export_bytes(db: Database, kind: str, fmt: str, where: ExportFilter = ExportFilter()) -> bytes:
    return frame_to_bytes(export_frame(db, kind, where), fmt)


def write_export(db: Database, kind: str, fmt: str, path: str | Path, where: ExportFilter = ExportFilter()) -> int:
    """Write the export to a file and return its row count."""
    frame = export_frame(db, kind, where)
    Path(path).write_bytes(frame_to_bytes(frame, fmt))
    return len(frame)


def completions_jsonl(db: Database, prompt_set: str) -> bytes:
    """Items of a prompt set in the completions import format, provenance kept (how data/builtin was made)."""
    lines = []
    for item in db.query(
        "SELECT i.id, p.text FROM items i JOIN prompts p ON p.id = i.prompt_id WHERE p.prompt_set = ? ORDER BY i.id",
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
        lines.append(json.dumps({"prompt": item["text"], "model": rows[0]["model"], "completions": completions},
                                ensure_ascii=False))
    return "".join(line + "\n" for line in lines).encode()
