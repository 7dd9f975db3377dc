import json

import pytest

from data import annotation, export, importing, items
from data.importing import BadImportFile
from tests.conftest import add_items


def jsonl(*rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.mark.parametrize("data, fmt", [
    (b"What is 2+2?\n\n  Name a colour.  \n", "txt"),
    (b"prompt,source,tags\nWhat is 2+2?,quiz,math;easy\nName a colour.,,\n", "csv"),
    (jsonl({"prompt": "What is 2+2?", "tags": ["math"]}, {"prompt": "Name a colour."}), "jsonl"),
    ("\ufeffWhat is 2+2?\nName a colour.\n".encode(), "txt"),
])
def test_prompt_formats(data, fmt):
    rows = importing.parse_prompts(data, fmt)
    assert [r.text for r in rows] == ["What is 2+2?", "Name a colour."]


def test_csv_tags_and_source():
    [row, _] = importing.parse_prompts(b"prompt,source,tags\nWhat is 2+2?,quiz,math;easy\nx,,\n", "csv")
    assert row.source == "quiz" and row.tags == ["math", "easy"]


@pytest.mark.parametrize("data, fmt, message", [
    (b"", "txt", "holds no prompts"),
    (b"\n \n", "jsonl", "holds no prompts"),
    (b"ok line\nbad \xff byte\n", "txt", r"line 2: the file is not UTF-8"),
    (b'{"prompt": "fine"}\n{"prompt": "broken"\n', "jsonl", r"line 2: not valid JSON"),
    (b'{"prompt": "fine"}\n\n["a list"]\n', "jsonl", r"line 3: each line must be a JSON object"),
    (b'{"prompt": "fine"}\n{"text": "wrong key"}\n', "jsonl", r"line 2: 'prompt' is missing"),
    (b"text,source\nhello,x\n", "csv", r"line 1: the CSV header needs a 'prompt' column"),
    (b"prompt,source\nhello,x\nhi,y,extra\n", "csv", r"line 3: expected 2 columns"),
    (b"prompt\n   \n", "csv", "holds no prompts"),
    (b"a", "xlsx", "cannot import prompts from .xlsx"),
])
def test_bad_prompt_files_name_the_line_and_the_problem(data, fmt, message):
    with pytest.raises(BadImportFile, match=message) as error:
        importing.parse_prompts(data, fmt)
    assert "Nothing was imported" in str(error.value)


def test_prompt_import_adds_new_texts_only(db):
    rows = importing.parse_prompts(b"one\ntwo\n", "txt")
    assert importing.import_prompts(db, rows, "s") == {"added": 2, "already_present": 0}
    assert importing.import_prompts(db, importing.parse_prompts(b"two\nthree\n", "txt"), "s") == {"added": 1, "already_present": 1}


def test_completions_import_creates_items_with_model_names(db):
    data = jsonl({"prompt": "p1", "completions": ["a", {"text": "b", "n_tokens": 3, "finish_reason": "eos"}], "model": "gpt-x"},
                 {"prompt": "p2", "completions": ["c", "d", "e"]})
    assert importing.import_completions(db, importing.parse_completions(data), "ext") == {"items": 2, "completions": 5}
    rows = db.execute("SELECT text, model_name, n_tokens, finish_reason FROM completions ORDER BY id").fetchall()
    assert rows[:2] == [("a", "gpt-x", None, None), ("b", "gpt-x", 3, "eos")]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p", "completions": ["only one"]}, "line 2: 'completions' must be a list of 2 to 9"),
    ({"prompt": "p", "completions": ["a", 5]}, "line 2: each completion must be a string"),
    ({"completions": ["a", "b"]}, "line 2: 'prompt' is missing"),
])
def test_bad_completion_files_import_nothing(db, row, message):
    data = jsonl({"prompt": "fine", "completions": ["a", "b"]}, row)
    with pytest.raises(BadImportFile, match=message):
        importing.import_completions(db, importing.parse_completions(data), "ext")
    assert items.counts(db)["items"] == 0


def comparison_texts(db) -> list[tuple]:
    return sorted(db.execute(
        """SELECT p.text, cc.text, rc.text, c.margin, a.name FROM comparisons c
           JOIN completions cc ON cc.id = c.chosen_id JOIN completions rc ON rc.id = c.rejected_id
           JOIN items i ON i.id = cc.item_id JOIN prompts p ON p.id = i.prompt_id
           JOIN rankings r ON r.id = c.ranking_id JOIN annotators a ON a.id = r.annotator_id""").fetchall())


def test_rankings_export_reimported_into_an_empty_database_reproduces_the_comparisons(db, tmp_path):
    from data.store import open_db

    first, second = add_items(db, 2, k=4)
    items.set_rankings_wanted(db, "test", 2)
    alice, bob = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    annotation.submit_ranking(db, first, alice, [[3], [2], [0, 1]], [1, 0, 3, 2], comment="tie")
    annotation.submit_ranking(db, first, bob, [[0, 1, 2, 3]], [0, 1, 2, 3])
    annotation.submit_ranking(db, second, alice, [[1], [0], [2], [3]], [3, 2, 1, 0])
    annotation.skip_item(db, second, bob, [0, 1, 2, 3])
    exported = export.export_bytes(db, "rankings", "jsonl")

    fresh = open_db(tmp_path / "fresh.db")
    assert importing.import_rankings(fresh, importing.parse_rankings(exported)) == {"rankings": 3, "items": 2}
    assert comparison_texts(fresh) == comparison_texts(db)
    assert len(comparison_texts(db)) == 5 + 0 + 6
    assert export.rankings_frame(fresh)["created_at"].tolist() == export.rankings_frame(db)["created_at"].tolist()


def test_bad_ranking_rows_are_refused(db):
    data = jsonl({"prompt": "p", "completions": ["a", "b", "c"], "ranking": [[0], [1]], "annotator": "x"})
    with pytest.raises(BadImportFile, match="line 1: bad ranking: give every completion a rank: C has none"):
        importing.parse_rankings(data)
