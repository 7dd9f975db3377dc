import io
import json

import pandas as pd
import pytest

from data import annotation, export
from data.export import ExportFilter
from tests.conftest import add_items


@pytest.fixture
def ranked(db):
    first, second = add_items(db, 2, k=3, prompt_set="set-a")
    [third] = add_items(db, 1, k=2, prompt_set="set-b")
    alice, bob = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    annotation.submit_ranking(db, first, alice, [[2], [0, 1]], [2, 1, 0])
    annotation.submit_ranking(db, second, bob, [[0], [1], [2]], [0, 1, 2])
    annotation.submit_ranking(db, third, alice, [[1], [0]], [0, 1])
    db.execute("UPDATE rankings SET created_at = '2026-01-15T10:00:00.000+00:00' WHERE item_id = ?", [second])
    db.conn.commit()
    return db


def test_pairs_have_trl_columns_and_provenance(ranked):
    frame = export.pairs_frame(ranked)
    assert list(frame.columns[:3]) == ["prompt", "chosen", "rejected"]
    assert {"annotator", "ranking_id", "margin", "ties_in_ranking", "created_at", "chosen_generator"} <= set(frame.columns)
    assert len(frame) == 2 + 3 + 1
    first = frame[(frame.prompt == "prompt 0") & (frame.prompt_set == "set-a")]
    assert set(first.chosen) == {"completion 0.2 word word"} and set(first.ties_in_ranking) == {1}


@pytest.mark.parametrize("where, rows", [
    (ExportFilter(annotators=["bob"]), 3),
    (ExportFilter(prompt_sets=["set-b"]), 1),
    (ExportFilter(since="2026-01-15", until="2026-01-15"), 3),
    (ExportFilter(until="2026-01-14"), 0),
    (ExportFilter(annotators=["alice"], prompt_sets=["set-a"]), 2),
])
def test_filters(ranked, where, rows):
    assert len(export.pairs_frame(ranked, where)) == rows


def test_bad_dates_say_the_format(ranked):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        export.pairs_frame(ranked, ExportFilter(since="15/01/2026"))


@pytest.mark.parametrize("kind", export.KINDS)
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_every_kind_and_format_reads_back(ranked, kind, fmt):
    data = export.export_bytes(ranked, kind, fmt)
    reader = {"jsonl": lambda b: pd.read_json(io.BytesIO(b), lines=True), "csv": lambda b: pd.read_csv(io.BytesIO(b)),
              "parquet": lambda b: pd.read_parquet(io.BytesIO(b))}[fmt]
    frame = reader(data)
    assert len(frame) == len(export.export_frame(ranked, kind))
    if kind == "rankings":
        ranking = frame.ranking[0]
        ranking = json.loads(ranking) if isinstance(ranking, str) else [list(g) for g in ranking]
        assert ranking == [[2], [0, 1]]


@pytest.mark.parametrize("fmt, builder", [("jsonl", "json"), ("csv", "csv"), ("parquet", "parquet")])
def test_pairs_load_with_hugging_face_datasets(ranked, tmp_path, fmt, builder):
    from datasets import load_dataset

    path = tmp_path / f"pairs.{fmt}"
    export.write_export(ranked, "pairs", fmt, path)
    dataset = load_dataset(builder, data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert dataset.num_rows == 6
    assert {"prompt", "chosen", "rejected"} <= set(dataset.column_names)
    assert isinstance(dataset[0]["chosen"], str)


def test_rankings_jsonl_loads_with_hugging_face_datasets(ranked, tmp_path):
    from datasets import load_dataset

    path = tmp_path / "rankings.jsonl"
    export.write_export(ranked, "rankings", "jsonl", path)
    dataset = load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert dataset[0]["ranking"] == [[2], [0, 1]]
