import json
import subprocess
import sys

import pytest

from data import annotation, demonstrations, export, importing, items
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
    assert importing.import_completions(db, importing.parse_completions(data), "ext") == {
        "items": 2, "already_present": 0, "completions": 5}
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
    assert importing.import_rankings(fresh, importing.parse_rankings(exported)) == {"rankings": 3, "already_present": 0, "items": 2}
    assert comparison_texts(fresh) == comparison_texts(db)
    assert len(comparison_texts(db)) == 5 + 0 + 6
    assert export.export_frame(fresh, "rankings")["created_at"].tolist() == export.export_frame(db, "rankings")["created_at"].tolist()


def test_bad_ranking_rows_are_refused(db):
    data = jsonl({"prompt": "p", "completions": ["a", "b", "c"], "ranking": [[0], [1]], "annotator": "x"})
    with pytest.raises(BadImportFile, match="line 1: bad ranking: give every completion a rank: C has none"):
        importing.parse_rankings(data)


# Finding 1: imports are idempotent.

def ranked_export(db) -> bytes:
    first, second = add_items(db, 2, k=3)
    items.set_rankings_wanted(db, "test", 2)
    alice, bob = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    annotation.submit_ranking(db, first, alice, [[2], [0, 1]], [1, 0, 2], seconds=3.5, flags=["prompt unclear"])
    annotation.submit_ranking(db, first, bob, [[0], [1], [2]], [0, 1, 2])
    annotation.submit_ranking(db, second, alice, [[1], [0, 2]], [2, 1, 0])
    return export.export_bytes(db, "rankings", "jsonl")


def store_sizes(db) -> dict:
    return {**items.counts(db), "n_rankings": db.execute("SELECT SUM(n_rankings) FROM items").fetchone()[0],
            "prompt_sets": db.execute("SELECT COUNT(*) FROM prompt_sets").fetchone()[0]}


def test_reimporting_a_rankings_export_doubles_nothing(db, tmp_path):
    from data.store import open_db

    exported = ranked_export(db)
    fresh = open_db(tmp_path / "fresh.db")
    assert importing.import_rankings(fresh, importing.parse_rankings(exported)) == {"rankings": 3, "already_present": 0, "items": 2}
    once = store_sizes(fresh)
    assert importing.import_rankings(fresh, importing.parse_rankings(exported)) == {"rankings": 0, "already_present": 3, "items": 0}
    assert store_sizes(fresh) == once and comparison_texts(fresh) == comparison_texts(db)


def test_importing_a_rankings_export_into_its_own_store_finds_every_item(db):
    exported = ranked_export(db)
    before = store_sizes(db)
    assert importing.import_rankings(db, importing.parse_rankings(exported), "test") == {"rankings": 0, "already_present": 3, "items": 0}
    assert store_sizes(db) == before


def test_a_new_annotator_of_a_known_item_adds_a_ranking_to_that_item(db):
    [row] = importing.parse_rankings(jsonl({"prompt": "p", "completions": ["a", "b"], "ranking": [[1], [0]], "annotator": "x"}))
    importing.import_rankings(db, [row])
    row.annotator = "y"
    assert importing.import_rankings(db, [row, row]) == {"rankings": 1, "already_present": 1, "items": 0}
    assert db.execute("SELECT n_rankings FROM items").fetchall() == [(2,)]


def test_reimporting_completions_adds_no_item_twice(db):
    data = jsonl({"prompt": "p1", "completions": ["a", "b"]}, {"prompt": "p1", "completions": ["b", "a"]})
    assert importing.import_completions(db, importing.parse_completions(data), "ext") == {
        "items": 2, "already_present": 0, "completions": 4}
    again = data + jsonl({"prompt": "p2", "completions": ["a", "b"]})
    assert importing.import_completions(db, importing.parse_completions(again), "ext") == {
        "items": 1, "already_present": 2, "completions": 2}
    assert importing.import_completions(db, importing.parse_completions(data), "other set")["items"] == 2  # a set's own items
    assert items.counts(db)["items"] == 5


def test_reimporting_demonstrations_adds_none_twice(db):
    data = jsonl({"prompt": "p1", "response": "r1"}, {"prompt": "p1", "response": "r2"})
    assert demonstrations.import_demonstrations(db, demonstrations.parse_demonstrations(data), "d") == {
        "demonstrations": 2, "already_present": 0}
    assert demonstrations.import_demonstrations(db, demonstrations.parse_demonstrations(data), "d") == {
        "demonstrations": 0, "already_present": 2}
    assert items.counts(db)["demonstrations"] == 2


# Findings 4 and 6: one strict schema per format; every failure is a BadImportFile naming the line; all or nothing.

GOOD_RANKING = {"prompt": "fine", "completions": ["a", "b"], "ranking": [[1], [0]], "annotator": "x"}
GOOD_COMPLETIONS = {"prompt": "fine", "completions": ["a", "b"]}
GOOD_DEMONSTRATION = {"prompt": "fine", "response": "ok"}


def after_a_good_line(good: dict, bad) -> bytes:
    """A file whose line 1 is fine and line 2 is `bad` (a dict of overrides, or raw text)."""
    line = bad if isinstance(bad, str) else json.dumps({**good, **bad})
    return (json.dumps(good) + "\n" + line + "\n").encode()


def rankings_file(bad) -> bytes:
    return after_a_good_line(GOOD_RANKING, bad)


def completions_file(bad) -> bytes:
    return after_a_good_line(GOOD_COMPLETIONS, bad)


def demonstrations_file(bad) -> bytes:
    return after_a_good_line(GOOD_DEMONSTRATION, bad)


IMPORTERS = {
    "rankings": lambda db, data: importing.import_rankings(db, importing.parse_rankings(data)),
    "completions": lambda db, data: importing.import_completions(db, importing.parse_completions(data), "ext"),
    "csv": lambda db, data: importing.import_prompts(db, importing.parse_prompts(data, "csv"), "s"),
    "jsonl": lambda db, data: importing.import_prompts(db, importing.parse_prompts(data, "jsonl"), "s"),
    "txt": lambda db, data: importing.import_prompts(db, importing.parse_prompts(data, "txt"), "s"),
    "demonstrations": lambda db, data: demonstrations.import_demonstrations(db, demonstrations.parse_demonstrations(data), "d"),
}
DEEP = "[" * 100_000
RANKING_WITH = '{"prompt": "p", "completions": ["a", "b"], "ranking": [[1], [0]], "annotator": "x", %s}'

MALFORMED = [
    ("rankings", rankings_file({"ranking": [[0.0], [1.0]]}), 2),
    ("rankings", rankings_file({"ranking": [[True], [False]]}), 2),
    ("rankings", rankings_file({"ranking": "B > A"}), 2),
    ("rankings", rankings_file({"seconds": "slow"}), 2),
    ("rankings", rankings_file({"seconds": -1}), 2),
    ("rankings", rankings_file({"seconds": True}), 2),
    ("rankings", rankings_file(RANKING_WITH % '"seconds": NaN'), 2),
    ("rankings", rankings_file({"models": "gpt-x"}), 2),
    ("rankings", rankings_file({"models": ["only one"]}), 2),
    ("rankings", rankings_file({"models": [1, 2]}), 2),
    ("rankings", rankings_file({"display_order": [0, 0]}), 2),
    ("rankings", rankings_file({"display_order": [1.0, 0.0]}), 2),
    ("rankings", rankings_file({"created_at": "yesterday"}), 2),
    ("rankings", rankings_file({"created_at": 1714557600}), 2),
    ("rankings", rankings_file({"annotator": "  "}), 2),
    ("rankings", rankings_file({"annotator": 7}), 2),
    ("rankings", rankings_file({"flags": ["nope"]}), 2),
    ("rankings", rankings_file({"flags": "all are bad"}), 2),
    ("rankings", rankings_file({"comment": 5}), 2),
    ("rankings", rankings_file({"prompt_set": " "}), 2),
    ("rankings", rankings_file({"item_id": 1.5}), 2),
    ("rankings", rankings_file({"seconds": 18446744073709551616}), 2),
    ("rankings", rankings_file({"annotator": "\x1b[31mred"}), 2),
    ("rankings", rankings_file({"annotator": "x" * 1_000_000}), 2),
    ("rankings", rankings_file({"completions": ["a"] * 10, "ranking": [list(range(10))]}), 2),
    ("rankings", rankings_file({"completions": ["a", 2]}), 2),
    ("rankings", rankings_file(DEEP), 2),
    ("rankings", rankings_file(RANKING_WITH % ('"seconds": 1' + "0" * 5000)), 2),
    ("rankings", rankings_file(RANKING_WITH % '"comment": "\\ud800"'), 2),
    ("completions", completions_file({"completions": ["a", True]}), 2),
    ("completions", completions_file({"completions": [{"text": "a", "gen_seconds": 18446744073709551616}, "b"]}), 2),
    ("completions", completions_file({"completions": [{"text": "a", "n_tokens": -1}, "b"]}), 2),
    ("completions", completions_file({"completions": [{"text": "a", "n_tokens": True}, "b"]}), 2),
    ("completions", completions_file({"completions": [{"text": "a", "seed": 2 ** 70}, "b"]}), 2),
    ("completions", completions_file({"completions": [{"text": "a", "seed": 1.5}, "b"]}), 2),
    ("completions", completions_file({"completions": [{"text": "a", "params": "greedy"}, "b"]}), 2),
    ("completions", completions_file({"completions": [{"text": "a", "gen_seconds": "1"}, "b"]}), 2),
    ("completions", completions_file({"completions": [{"text": "a", "finish_reason": 3}, "b"]}), 2),
    ("completions", completions_file({"model": ["gpt"]}), 2),
    ("completions", completions_file(DEEP), 2),
    ("csv", b'prompt\nfine\n"never closed\nmore\n', 3),
    ("csv", b'prompt\nfine\n"a"b\n', 3),
    ("csv", b"prompt\nfine\nnul\x00byte\n", 3),
    ("csv", b"prompt\nfine\n" + b"x" * 200_000 + b"\n", 3),
    ("jsonl", b'{"prompt": "fine"}\n{"prompt": "p", "source": 5}\n', 2),
    ("jsonl", b'{"prompt": "fine"}\n' + DEEP.encode() + b"\n", 2),
    ("jsonl", b'{"prompt": "fine"}\n{"prompt": "p", "tags": [1]}\n', 2),
    ("txt", b"fine\nnul\x00byte\n", 2),
    ("txt", b"fine\nbad \xff byte\n", 2),
    ("demonstrations", demonstrations_file({"response": "   "}), 2),
    ("demonstrations", demonstrations_file({"messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": 5}]}), 2),
    ("demonstrations", demonstrations_file(DEEP), 2),
    ("demonstrations", b'{"prompt": "fine", "response": "ok"}\n{"prompt": "p", "response": "nul\x00"}\n', 2),
]


@pytest.mark.parametrize("kind, data, line", MALFORMED)
def test_malformed_files_are_refused_naming_the_line_and_store_nothing(db, kind, data, line):
    before = store_sizes(db)
    with pytest.raises(BadImportFile, match=f"^line {line}: .*Nothing was imported") as error:
        IMPORTERS[kind](db, data)
    assert error.value.line == line
    assert store_sizes(db) == before


def test_an_unterminated_csv_quote_says_how_to_close_it():
    with pytest.raises(BadImportFile, match="line 2: a quoted field starting here is never closed"):
        importing.parse_prompts(b'prompt\n"what about\nthis\n', "csv")


def test_an_empty_answer_is_kept_and_counted_but_a_blank_prompt_or_a_number_is_not(db):
    rows = importing.parse_completions(jsonl({"prompt": "p", "completions": ["a", "   "]}, {"prompt": "q", "completions": ["", "b"]}))
    assert importing.import_completions(db, rows, "s") == {"items": 2, "already_present": 0, "completions": 4, "empty_answers": 2}
    assert annotation.get_item(db, 1).completions[1].text == "   "
    for bad, message in (({"prompt": " ", "completions": ["a", "b"]}, "'prompt' is missing or empty"),
                         ({"prompt": "p", "completions": ["a", 5]}, "each completion must be a string or an object"),
                         ({"prompt": "p", "completions": [""]}, "'completions' must be a list of 2 to 9")):
        with pytest.raises(BadImportFile, match=message):
            importing.parse_completions(jsonl(bad))


def test_every_refused_line_is_named_at_once_and_the_valid_ones_can_be_imported_alone(db, tmp_path):
    good = {"prompt": "p", "completions": ["a", "b"], "ranking": [[0], [1]], "annotator": "ann"}
    lines = [json.dumps({**good, "prompt": f"p{i}"}) for i in range(150)]
    for i in range(5, 150, 2):  # 73 bad lines of three kinds
        lines[i] = ["{not json", json.dumps({**good, "ranking": "A > B"}), json.dumps({**good, "prompt": ""})][i % 3]
    data = "\n".join(lines).encode()
    with pytest.raises(importing.RefusedLines) as error:
        importing.parse_rankings(data)
    message = str(error.value)
    assert message.startswith("73 lines are refused. Nothing was imported. The other 77 rows are valid")
    assert "line 6: 'prompt' is missing" in message and "line 8: bad ranking" in message and "line 10: not valid JSON" in message
    assert len(error.value.refused) == 73 and message.count("\nline ") == 73  # all listed: under 100
    rows = importing.parse_rankings(data, skip_invalid=True)
    assert len(rows) == 77 and importing.import_rankings(db, rows)["lines_left_out"] == 73
    assert importing.write_rejects(rows.refused, tmp_path / "rejects.jsonl") == 73
    first = json.loads((tmp_path / "rejects.jsonl").read_text().splitlines()[0])
    assert first == {"line": 6, "problem": "'prompt' is missing or empty", "text": lines[5]}


def test_a_prompt_file_with_a_bad_line_says_how_to_import_the_rest_where_that_can_be_done(db, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "first"}\n{"prompt": ""}\n{"prompt": "third"}\n')
    with pytest.raises(importing.RefusedLines) as error:
        importing.parse_prompts(path.read_bytes(), "jsonl")
    assert str(error.value).startswith("line 2: 'prompt' is missing or empty. Nothing was imported. The other 2 rows are "
                                       "valid: import them alone with --skip-invalid.")
    assert "valid" not in error.value.message(None)  # a form with no such choice does not promise one
    cli = [sys.executable, "-m", "data", "--db", str(tmp_path / "cli.db")]
    subprocess.run([*cli, "init"], check=True, capture_output=True)
    refused = subprocess.run([*cli, "import-prompts", str(path), "--set", "mine"], capture_output=True, text=True)
    assert refused.returncode != 0 and "--skip-invalid" in refused.stderr
    done = subprocess.run([*cli, "import-prompts", str(path), "--set", "mine", "--skip-invalid"], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["added"] == 2
    many = "\n".join(["{bad"] * 250).encode()
    with pytest.raises(importing.RefusedLines, match="250 lines are refused") as error:
        importing.parse_rankings(many, skip_invalid=True)  # nothing valid: refused even when skipping
    assert str(error.value).count("\nline ") == 100 and "… and 150 more" in str(error.value)


def test_a_blank_prompt_set_name_is_refused(db):
    with pytest.raises(BadImportFile, match="name the prompt set"):
        importing.import_prompts(db, importing.parse_prompts(b"one", "txt"), "  ")


def test_optional_ranking_keys_may_be_null_and_times_are_stored_in_utc(db):
    row = {**GOOD_RANKING, "display_order": None, "seconds": None, "models": None, "flags": None, "comment": None,
           "prompt_set": None, "item_id": None, "created_at": "2024-05-01T12:00:00+02:00"}
    importing.import_rankings(db, importing.parse_rankings(jsonl(row)))
    assert db.execute("SELECT created_at, display_order, flags, comment FROM rankings").fetchone() == (
        "2024-05-01T10:00:00.000+00:00", "[0, 1]", "[]", "")


def test_json_strings_may_hold_unicode_line_separators():
    [row] = importing.parse_rankings(json.dumps({**GOOD_RANKING, "prompt": "one\u2028two\x85three"}, ensure_ascii=False).encode())
    assert row.prompt == "one\u2028two\x85three"


# Conversations as prompts.

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell me a joke."}]
HH_PROMPT = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke."


def stored_prompts(db) -> list[tuple]:
    return db.execute("SELECT text, messages FROM prompts ORDER BY id").fetchall()


def test_prompts_import_messages_and_hh_transcripts_as_conversations(db):
    data = jsonl({"messages": CHAT}, {"prompt": HH_PROMPT}, {"messages": [{"role": "user", "content": "plain"}]},
                 {"prompt": "Human: not a dialogue"})
    rows = importing.parse_prompts(data, "jsonl")
    assert [r.messages for r in rows] == [CHAT, CHAT[1:], None, None]
    assert rows[1].text == "Human: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke."
    assert importing.import_prompts(db, rows, "s") == {"added": 4, "already_present": 0}
    assert importing.import_prompts(db, importing.parse_prompts(data, "jsonl"), "s") == {"added": 0, "already_present": 4}
    assert [(text, json.loads(m) if m else None) for text, m in stored_prompts(db)] == [
        (rows[0].text, CHAT), (rows[1].text, CHAT[1:]), ("plain", None), ("Human: not a dialogue", None)]


def test_a_csv_prompt_may_be_an_hh_transcript():
    data = ('prompt\n"' + HH_PROMPT.replace('"', '""') + '"\n').encode()
    [row] = importing.parse_prompts(data, "csv")
    assert row.messages == CHAT[1:]


@pytest.mark.parametrize("record, message", [
    ({"messages": CHAT[:3]}, r"line 1: bad conversation: the conversation must end with the user turn"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "line 1: bad conversation: message 2"),
    ({"messages": "Hi"}, "line 1: bad conversation: 'messages' must be a non-empty list"),
    ({"messages": CHAT, "prompt": "something else"}, "'prompt' and 'messages' hold different prompts"),
    ({"prompt": "\n\nHuman: Hi\n\nAssistant: Hello"}, "must end with the user turn"),
])
def test_bad_conversations_are_refused(record, message):
    with pytest.raises(BadImportFile, match=message):
        importing.parse_prompts(jsonl(record), "jsonl")


def test_completions_for_a_conversation(db):
    data = jsonl({"messages": CHAT, "completions": ["Knock knock.", "No."], "model": "m"},
                 {"prompt": HH_PROMPT, "completions": ["Why?", "Because."]})
    assert importing.import_completions(db, importing.parse_completions(data), "s") == {"items": 2, "already_present": 0, "completions": 4}
    assert importing.import_completions(db, importing.parse_completions(data), "s") == {"items": 0, "already_present": 2, "completions": 0}
    first, second = [annotation.get_item(db, i) for i in (1, 2)]
    assert first.messages == CHAT and second.messages == CHAT[1:]


def hh_pair(prompt: str, chosen: str, rejected: str) -> dict:
    return {"chosen": f"{prompt}\n\nAssistant: {chosen}", "rejected": f"{prompt}\n\nAssistant: {rejected}"}


HH_FILE = jsonl(
    hh_pair(HH_PROMPT, "Why did the chicken cross the road?", "No."),
    hh_pair("\n\nHuman: What is 2+2?", "4.", "5."),
    hh_pair("\n\nHuman: Say nothing", "", "Ok"),  # an empty reply (HH-RLHF holds a few): an empty answer, kept
    hh_pair("\n\nHuman: Echo", "Same.", "Same."),  # two equal replies: nothing to prefer, left out
)


def test_hh_rlhf_pairs_become_items_ranked_chosen_over_rejected(db):
    pairs = importing.parse_hh_pairs(HH_FILE)
    assert pairs.skipped_lines == [4] and [r.ranking for r in pairs.rows] == [[[0], [1]]] * 3
    assert importing.import_hh_pairs(db, pairs) == {"rankings": 3, "already_present": 0, "items": 3, "empty_answers": 1,
                                                     "pairs_left_out": 1}
    assert importing.import_hh_pairs(db, importing.parse_hh_pairs(HH_FILE)) == {
        "rankings": 0, "already_present": 3, "items": 0, "empty_answers": 1, "pairs_left_out": 1}
    assert comparison_texts(db) == sorted([
        ("Human: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.", "Why did the chicken cross the road?", "No.", 1, "hh-rlhf"),
        ("What is 2+2?", "4.", "5.", 1, "hh-rlhf"), ("Say nothing", "", "Ok", 1, "hh-rlhf")])
    assert annotation.get_item(db, 1).messages == CHAT[1:] and stored_prompts(db)[1] == ("What is 2+2?", None)
    assert db.execute("SELECT DISTINCT prompt_set FROM prompts").fetchall() == [("hh-rlhf",)]


def test_hh_pairs_by_another_annotator_rank_the_same_items(db):
    importing.import_hh_pairs(db, importing.parse_hh_pairs(HH_FILE))
    assert importing.import_hh_pairs(db, importing.parse_hh_pairs(HH_FILE, annotator="second pass")) == {
        "rankings": 3, "already_present": 0, "items": 0, "empty_answers": 1, "pairs_left_out": 1}


@pytest.mark.parametrize("record, message", [
    ({"chosen": "\n\nHuman: a\n\nAssistant: b"}, "line 2: 'rejected' must be a whole HH-RLHF dialogue"),
    ({"chosen": "plain", "rejected": "text"}, "line 2: 'chosen' must be a whole HH-RLHF dialogue"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}, "line 2: not an HH-RLHF pair"),
])
def test_bad_hh_pair_files_import_nothing(db, record, message):
    with pytest.raises(BadImportFile, match=message):
        importing.parse_hh_pairs(jsonl(hh_pair("\n\nHuman: fine", "a", "b"), record))
    with pytest.raises(BadImportFile, match="no HH-RLHF pairs"):
        importing.parse_hh_pairs(jsonl(hh_pair("\n\nHuman: same", "a", "a")))


def test_a_rankings_export_of_conversations_round_trips_with_messages_and_guideline_versions(db, tmp_path):
    from data.store import open_db

    importing.import_completions(db, importing.parse_completions(jsonl(
        {"messages": CHAT, "completions": ["Knock knock.", "No.", "Why?"]},
        {"prompt": "plain prompt", "completions": ["a", "b"]})), "chats")
    alice = annotation.annotator_id(db, "alice")
    annotation.submit_ranking(db, 1, alice, [[2], [0, 1]], [1, 0, 2])
    annotation.submit_ranking(db, 2, alice, [[1], [0]], [0, 1])
    db.execute("UPDATE rankings SET guideline_version = 3 WHERE item_id = 1")
    db.conn.commit()
    exported = export.export_bytes(db, "rankings", "jsonl")
    assert [json.loads(line)["messages"] for line in exported.splitlines()] == [CHAT, [{"role": "user", "content": "plain prompt"}]]

    fresh = open_db(tmp_path / "fresh.db")
    assert importing.import_rankings(fresh, importing.parse_rankings(exported)) == {"rankings": 2, "already_present": 0, "items": 2}
    assert stored_prompts(fresh) == stored_prompts(db) and comparison_texts(fresh) == comparison_texts(db)
    assert annotation.get_item(fresh, 1).messages == CHAT
    assert fresh.execute("SELECT guideline_version FROM rankings ORDER BY id").fetchall() == [(3,), (None,)]
    assert importing.import_rankings(fresh, importing.parse_rankings(exported)) == {"rankings": 0, "already_present": 2, "items": 0}


def test_hh_pairs_import_from_the_command_line(db, db_path, tmp_path):
    from data.__main__ import main

    (tmp_path / "hh.jsonl").write_bytes(HH_FILE)
    assert main(["--db", str(db_path), "import-hh", str(tmp_path / "hh.jsonl"), "--set", "hh"]) == 0
    assert db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 3
