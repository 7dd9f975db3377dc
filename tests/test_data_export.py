import io
import json
import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from data import annotation, export, jobs
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
    frame = export.export_frame(ranked, "pairs")
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
    assert len(export.export_frame(ranked, "pairs", where)) == rows


def test_bad_dates_say_the_format(ranked):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        export.export_frame(ranked, "pairs", ExportFilter(since="15/01/2026"))


def read(data: bytes, fmt: str) -> pd.DataFrame:
    return {"jsonl": lambda: pd.read_json(io.BytesIO(data), lines=True), "csv": lambda: pd.read_csv(io.BytesIO(data)),
            "parquet": lambda: pd.read_parquet(io.BytesIO(data))}[fmt]()


@pytest.mark.parametrize("kind", export.KINDS)
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_every_kind_and_format_reads_back(ranked, kind, fmt):
    frame = read(export.export_bytes(ranked, kind, fmt), fmt)
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


@pytest.mark.parametrize("kind", export.KINDS)
def test_an_export_in_many_chunks_equals_one_in_a_single_chunk(ranked, monkeypatch, kind):
    whole = {fmt: export.export_bytes(ranked, kind, fmt) for fmt in export.FORMATS}
    monkeypatch.setattr(export, "CHUNK_ROWS", 2)  # pages split rankings apart
    for fmt in ("jsonl", "csv"):
        assert export.export_bytes(ranked, kind, fmt) == whole[fmt]
    chunked = pq.ParquetFile(io.BytesIO(export.export_bytes(ranked, kind, "parquet")))
    assert chunked.num_row_groups > 1 and chunked.schema_arrow == export.SCHEMAS[kind]
    assert chunked.read().equals(pq.read_table(io.BytesIO(whole["parquet"])))


@pytest.mark.parametrize("where", [ExportFilter(), ExportFilter(annotators=["bob"]), ExportFilter(min_agreement=0.5)])
def test_progress_counts_up_to_the_row_count(ranked, tmp_path, monkeypatch, where):
    monkeypatch.setattr(export, "CHUNK_ROWS", 4)
    calls = []
    rows = export.write_export(ranked, "pairs", "jsonl", tmp_path / "pairs.jsonl", where, on_progress=lambda *a: calls.append(a))
    assert rows == export.count_rows(ranked, "pairs", where) == len(export.export_frame(ranked, "pairs", where))
    assert calls[-1] == (rows, rows) and [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len((tmp_path / "pairs.jsonl").read_bytes().splitlines()) == rows


def test_a_failed_export_leaves_no_file(ranked, tmp_path):
    def cancel(done, total):
        raise KeyboardInterrupt

    (tmp_path / "out").mkdir()
    with pytest.raises(KeyboardInterrupt):
        export.write_export(ranked, "pairs", "parquet", tmp_path / "out" / "pairs.parquet", on_progress=cancel)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("kind", export.KINDS)
def test_preview_is_the_first_rows_of_the_export(ranked, kind):
    frame = export.preview(ranked, kind, rows=2)
    assert len(frame) == 2 and list(frame.columns) == export.SCHEMAS[kind].names
    assert frame.to_dict("records") == export.export_frame(ranked, kind).head(2).to_dict("records")


FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"]


def test_csv_cells_that_start_a_formula_are_quoted_and_other_formats_stay_exact(db):
    [item] = add_items(db, 1, k=len(FORMULAS) + 1)
    db.execute("UPDATE prompts SET text = '=cmd|calc' WHERE id = (SELECT prompt_id FROM items WHERE id = ?)", [item])
    for position, text in enumerate(FORMULAS + ["a = b - c"]):
        db.execute("UPDATE completions SET text = ? WHERE item_id = ? AND position = ?", [text, item, position])
    db.conn.commit()
    annotation.submit_ranking(db, item, annotation.annotator_id(db, "alice"), [[6], list(range(6))], list(range(7)))

    csv = pd.read_csv(io.BytesIO(export.export_bytes(db, "pairs", "csv")), keep_default_na=False)
    assert set(csv.prompt) == {"'=cmd|calc"} and set(csv.chosen) == {"a = b - c"}
    assert list(csv.rejected) == ["'" + text for text in FORMULAS]
    for fmt in ("jsonl", "parquet"):
        exact = read(export.export_bytes(db, "pairs", fmt), fmt)
        assert set(exact.prompt) == {"=cmd|calc"} and list(exact.rejected) == FORMULAS


def test_every_csv_cell_is_quoted_so_other_separators_find_no_formula(db):
    [item] = add_items(db, 1, k=2)
    db.execute("UPDATE completions SET text = 'x;=cmd|calc' WHERE item_id = ? AND position = 0", [item])
    db.conn.commit()
    annotation.submit_ranking(db, item, annotation.annotator_id(db, "alice"), [[0], [1]], [0, 1])
    assert b'"x;=cmd|calc"' in export.export_bytes(db, "pairs", "csv")  # a ';'-splitting spreadsheet keeps it one cell


def test_export_runs_as_a_job_from_the_command_line(ranked, db_path, tmp_path):
    out = tmp_path / "pairs.parquet"
    argv = ["--db", str(db_path), "--kind", "pairs", "--format", "parquet", "--out", str(out), "--annotators", "alice,bob"]
    assert jobs.job_main("export", export.ExportConfig, export.run, argv) == 0
    assert len(pd.read_parquet(out)) == 6
    [job] = jobs.list_jobs(ranked, kind="export")
    assert job["status"] == "done" and job["progress"] == 1.0 and job["result"] == {"rows": 6, "file": str(out)}


@pytest.mark.parametrize("config, message", [
    (dict(), "--out"), (dict(out="x", kind="triples"), "unknown export kind"), (dict(out="x", format="xlsx"), "unknown export format"),
    (dict(out="x", since="15/01/2026"), "YYYY-MM-DD"),
])
def test_an_export_job_with_bad_settings_is_refused_before_it_starts(config, message):
    with pytest.raises(ValueError, match=message):
        export.ExportConfig(**config)


def test_the_data_command_line_streams_the_export_and_reports_progress(ranked, db_path, tmp_path, capsys):
    from data.__main__ import main

    out = tmp_path / "rankings.jsonl"
    assert main(["--db", str(db_path), "export", "--kind", "rankings", "--out", str(out)]) == 0
    assert len(out.read_bytes().splitlines()) == 3
    assert "exported 3 of 3 rows" in capsys.readouterr().err


def test_the_unfiltered_count_takes_no_join_and_equals_the_joined_one(ranked):
    for kind in export.KINDS:
        joined = ranked.execute(f"SELECT COUNT(*) {export._FROM[kind]} WHERE {export.UNFILTERED}").fetchone()[0]
        assert export.count_rows(ranked, kind) == joined == len(export.export_frame(ranked, kind))


# Conversations: TRL's conversational preference format.

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell me a joke."}]


@pytest.fixture
def chats(db):
    from data import items

    items.ensure_prompt_set(db, "chats")
    chat, _ = items.add_prompt(db, "chats", CHAT)
    plain, _ = items.add_prompt(db, "chats", "plain prompt")
    first = items.add_item(db, chat, [items.NewCompletion("Knock knock."), items.NewCompletion("No.")])
    second = items.add_item(db, plain, [items.NewCompletion("a"), items.NewCompletion("b")])
    db.conn.commit()
    alice = annotation.annotator_id(db, "alice")
    annotation.submit_ranking(db, first, alice, [[0], [1]], [1, 0])
    annotation.submit_ranking(db, second, alice, [[1], [0]], [0, 1])
    db.execute("UPDATE rankings SET guideline_version = 2 WHERE item_id = ?", [first])
    db.conn.commit()
    return db


def is_trl_conversational_preference(row: dict) -> bool:
    """TRL's conversational preference example: prompt, chosen and rejected are lists of {role, content} messages."""
    messages = lambda value: isinstance(value, list) and all(set(m) == {"role", "content"} for m in value)  # noqa: E731
    return all(messages(row[key]) for key in ("prompt", "chosen", "rejected")) and row["prompt"][-1]["role"] == "user" \
        and [m["role"] for m in row["chosen"] + row["rejected"]] == ["assistant", "assistant"]


@pytest.mark.parametrize("fmt, loader", [("jsonl", "json"), ("parquet", "parquet")])
def test_conversational_pairs_load_in_datasets_as_trl_expects(chats, tmp_path, fmt, loader):
    from datasets import load_dataset

    out = tmp_path / f"pairs.{fmt}"
    assert export.write_export(chats, "pairs", fmt, out) == 2  # auto: some prompt is a conversation
    dataset = load_dataset(loader, data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert dataset.features["prompt"] == dataset.features["chosen"] == dataset.features["rejected"]
    rows = list(dataset)
    assert all(is_trl_conversational_preference(row) for row in rows)
    assert rows[0]["prompt"] == CHAT and rows[0]["chosen"] == [{"role": "assistant", "content": "Knock knock."}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "plain prompt"}] and rows[1]["chosen"][0]["content"] == "b"
    assert [row["guideline_version"] for row in rows] == [2, None]


def test_auto_is_conversational_when_an_exported_prompt_is_one(chats, ranked):  # one store holding both
    assert isinstance(export.export_frame(chats, "pairs", ExportFilter(prompt_sets=["set-a"])).prompt[0], str)
    assert export.export_frame(chats, "pairs", ExportFilter(prompt_sets=["chats"])).prompt[1] == [{"role": "user", "content": "plain prompt"}]
    assert set(map(type, export.export_frame(chats, "pairs").prompt)) == {list}


def test_the_conversational_option_forces_one_format(chats, ranked):
    assert list(export.export_frame(chats, "pairs", ExportFilter(prompt_sets=["chats"]), "no").prompt) == [
        "System: Be brief.\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.", "plain prompt"]
    plain_only = ExportFilter(prompt_sets=["set-a"])
    table = pq.read_table(io.BytesIO(export.export_bytes(chats, "pairs", "parquet", plain_only, "yes")))
    assert [table.schema.field(c).type for c in ("prompt", "chosen", "rejected")] == [export.MESSAGES] * 3
    assert table.column("prompt").to_pylist()[0] == [{"role": "user", "content": "prompt 0"}]


def test_csv_writes_messages_as_json(chats):
    frame = pd.read_csv(io.BytesIO(export.export_bytes(chats, "pairs", "csv")), keep_default_na=False)
    assert json.loads(frame.prompt[0]) == CHAT and json.loads(frame.chosen[1]) == [{"role": "assistant", "content": "b"}]


def test_rankings_carry_messages_and_guideline_versions(chats):
    table = pq.read_table(io.BytesIO(export.export_bytes(chats, "rankings", "parquet")))
    assert table.schema.field("messages").type == export.MESSAGES
    assert table.column("messages").to_pylist() == [CHAT, [{"role": "user", "content": "plain prompt"}]]
    assert table.column("guideline_version").to_pylist() == [2, None]


def test_the_preview_matches_the_export_for_conversations(chats):
    assert export.preview(chats, "pairs", rows=1).to_dict("records") == export.export_frame(chats, "pairs").head(1).to_dict("records")


def test_an_export_job_writes_conversational_pairs_from_the_command_line(chats, db_path, tmp_path):
    out = tmp_path / "pairs.jsonl"
    argv = ["--db", str(db_path), "--kind", "pairs", "--out", str(out), "--conversational", "no"]
    assert jobs.job_main("export", export.ExportConfig, export.run, argv) == 0
    assert [json.loads(line)["prompt"] for line in out.read_bytes().splitlines()][1] == "plain prompt"
    with pytest.raises(ValueError, match="conversational must be one of"):
        export.ExportConfig(out="x", conversational="sometimes")


# A dataset folder with a dataset card that `datasets.load_dataset(folder)` loads as it is.

@pytest.mark.parametrize("kind", export.KINDS)
def test_a_dataset_folder_loads_with_datasets_and_carries_a_card(ranked, tmp_path, kind):
    from datasets import load_dataset

    folder = tmp_path / "exports" / f"{kind}-dataset"
    rows = export.write_export(ranked, kind, export.DATASET, folder, export.ExportFilter(prompt_sets=["set-a"]))
    loaded = load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))  # not ~/.cache: its key ignores the schema
    assert list(loaded) == ["train"] and loaded["train"].num_rows == rows > 0
    assert loaded["train"].column_names == export.schema(kind).names
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n# license: fill this in") and "license: null" in card
    assert f"| rows | {rows:,} |" in card and "| annotators | 2 |" in card and "| prompt sets | 1 |" in card
    assert "- prompt_sets: set-a\n" in card and "pairwise agreement" in card
    assert [p.name for p in folder.parent.iterdir()] == [f"{kind}-dataset"]  # no partial folder left


def test_a_dataset_export_never_writes_over_a_folder(ranked, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists already: choose a new folder"):
        export.write_export(ranked, "pairs", export.DATASET, tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_a_dataset_zip_holds_the_folder(ranked):
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(export.dataset_zip(ranked, "pairs", name="prefs"))).namelist()
    assert sorted(names) == ["prefs/README.md", "prefs/data/train.parquet"]


@pytest.mark.parametrize("fmt", [*export.FORMATS, export.DATASET])
def test_a_download_never_holds_more_than_the_limit_in_memory(ranked, monkeypatch, fmt):
    """Trust pass 3, finding 5: a 1 GB export took 1 GB of the server's memory to download."""
    whole = len(export.dataset_zip(ranked, "pairs") if fmt == export.DATASET else export.export_bytes(ranked, "pairs", fmt))
    monkeypatch.setattr(export, "DOWNLOAD_LIMIT_BYTES", whole // 2)
    grown = []
    capped_write = export._CappedBuffer.write
    monkeypatch.setattr(export._CappedBuffer, "write", lambda self, data: (grown.append(self.tell()), capped_write(self, data))[1])
    with pytest.raises(export.ExportTooLarge, match="write it to a file"):
        export.dataset_zip(ranked, "pairs") if fmt == export.DATASET else export.export_bytes(ranked, "pairs", fmt)
    assert grown and max(grown) <= whole // 2  # what the buffer held before each write: never past the limit


def test_what_a_killed_export_writer_left_is_swept_by_the_next_export(db, tmp_path):
    """Finding 19 of the third trust pass: a killed export job left a hidden .partial file that nothing removed."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f".pairs.jsonl.{dead.pid}.k3x9q2zz.partial"
    leftover.write_text("half a file")
    mine = tmp_path / f".other.jsonl.{os.getpid()}.abcdefgh.partial"  # a writer still running: kept
    mine.write_text("being written")
    export.write_export(db, "pairs", "jsonl", tmp_path / "pairs.jsonl")
    assert not leftover.exists() and mine.exists() and (tmp_path / "pairs.jsonl").exists()


def test_the_dataset_card_shows_model_names_from_imported_files_as_text(db, tmp_path):
    """Finding 20 of the third trust pass: an imported model name added an image and a fake License section."""
    from data import importing

    hostile = "evil ![pixel](http://tracker.example/p.png)\n## License\nAll rights reserved"
    rows = importing.parse_rankings(json.dumps({"prompt": "p", "completions": ["a", "b"], "ranking": [[0], [1]],
                                                "annotator": "x", "models": [hostile, "fine"]}).encode())
    importing.import_rankings(db, rows)
    export.write_export(db, "pairs", export.DATASET, tmp_path / "card")
    card = (tmp_path / "card" / "README.md").read_text()
    assert "![pixel]" not in card and "\n## License" not in card and "\\!\\[pixel\\]" in card


def test_names_holding_commas_reach_the_export_whole(db, tmp_path):
    """Lists of names were comma-joined into one string and split again, so a set named "a, b" could not be chosen."""
    from data import items as items_module

    items_module.ensure_prompt_set(db, "physics, grade 9")
    config = export.ExportConfig(out=str(tmp_path / "x.jsonl"), prompt_sets=["physics, grade 9"], annotators='["ann, jr"]')
    assert config.export_filter().prompt_sets == ["physics, grade 9"] and config.export_filter().annotators == ["ann, jr"]
    assert export.ExportConfig(out="x.jsonl", prompt_sets="a, b").prompt_sets == ["a", "b"]  # a job stored as a string
