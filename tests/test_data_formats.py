"""The public preference formats (TRL, scored completions, Chatbot Arena, OpenAssistant) read as they are, from JSONL,
CSV and Parquet, auto-detected, every error at once; the pairs export round-trips (issue 23)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data import annotation, export, formats, importing, leaderboard, quality
from data.importing import BadImportFile
from data.store import open_db
from tests.conftest import add_items

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


def read(name: str, **options) -> formats.Read:
    return formats.read((FIXTURES / name).read_bytes(), name, **options)


def pair_texts(db) -> list[tuple]:
    """Every exported pair as (prompt, chosen, rejected), sorted."""
    return sorted((r["prompt"] if isinstance(r["prompt"], str) else json.dumps(r["prompt"]),
                   json.dumps(r["chosen"]), json.dumps(r["rejected"]))
                  for r in (json.loads(line) for line in export.export_bytes(db, "pairs", "jsonl").splitlines()))


@pytest.mark.parametrize("name, fmt", [
    ("trl_standard.jsonl", "trl"), ("trl_implicit.jsonl", "trl"), ("trl_conversational.jsonl", "trl"),
    ("ultrafeedback.jsonl", "scored"), ("scored_simple.jsonl", "scored"), ("arena.jsonl", "arena"),
    ("arena_55k.csv", "arena"), ("oasst.jsonl", "oasst"), ("oasst_trees.jsonl", "oasst"),
])
def test_each_format_is_recognised_by_its_columns(name, fmt):
    assert read(name, skip_invalid=True).fmt == fmt


def test_trl_standard_explicit_and_implicit_prompts_empty_answers_kept_equal_answers_left_out(db):
    result = read("trl_standard.jsonl")
    assert [(r.text, r.completions, r.ranking) for r in result.rows] == [
        ("What colour is the sky on a clear day?", ["Blue.", "Green, mostly."], [[0], [1]]),
        ("Name a prime number.", ["7", ""], [[0], [1]])]
    assert result.skipped == [3]
    counts = formats.import_read(db, result, "trl")
    assert counts == {"format": "trl", "rankings": 2, "already_present": 0, "items": 2, "empty_answers": 1, "pairs_left_out": 1}
    [implicit] = read("trl_implicit.jsonl").rows  # TRL's extract_prompt: the cut before the first difference, its space kept
    assert (implicit.text, implicit.completions) == ("The sky is", [" blue.", " green."])


def test_trl_conversational_prompts_as_messages_or_as_shared_turns():
    rows = read("trl_conversational.jsonl").rows
    assert [(r.text, r.messages, r.completions) for r in rows[:2]] == [
        ("What is 2 + 2?", None, ["4.", "5."]), ("Tell me a joke.", None, ["Why did the chicken cross the road?", "No."])]
    assert rows[2].messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    assert rows[2].completions == ["Paris.", "Lyon."]


def test_a_rankings_line_whose_prompt_is_a_list_of_messages_says_to_use_trl():
    line = {"prompt": [{"role": "user", "content": "Hi"}], "completions": ["a", "b"], "ranking": [[0], [1]], "annotator": "x"}
    with pytest.raises(BadImportFile, match="'prompt' is a list .*--format trl"):
        importing.parse_rankings(json.dumps(line).encode())


def test_scored_completions_rank_by_score_ties_equal_and_an_aspect_can_be_chosen():
    [row] = read("ultrafeedback.jsonl").rows
    assert row.ranking == [[1], [0, 3], [2]] and row.models == ["model-a", "model-b", "model-c", "model-d"]
    assert row.completions[2] == ""  # an empty answer, ranked last
    [by_help] = read("ultrafeedback.jsonl", score_key="helpfulness").rows
    assert by_help.ranking == [[1, 3], [0], [2]]
    with pytest.raises(BadImportFile, match="completion 3's honesty is 'N/A', not a number"):
        read("ultrafeedback.jsonl", score_key="honesty")
    [simple] = read("scored_simple.jsonl").rows
    assert simple.ranking == [[0, 1], [2]]


def test_arena_battles_keep_ties_flag_both_bad_and_feed_the_leaderboard(db):
    result = read("arena.jsonl", skip_invalid=True)
    assert [(r.ranking, r.flags, r.annotator) for r in result.rows] == [
        ([[0], [1]], [], "arena_user_1"), ([[0, 1]], [], "arena_user_2"), ([[0, 1]], ["all are bad"], "arena_user_1")]
    assert [(r.line, r.problem.split(" (")[0]) for r in result.rows.refused] == [(4, "the two conversations differ before their last answers")]
    formats.import_read(db, result, "arena")
    leaderboard.refresh(db)
    board = leaderboard.leaderboard(db, bootstrap=10)
    assert {r.model for r in board.ratings} == {"vicuna-13b", "alpaca-13b", "koala-13b"}
    flat = read("arena_55k.csv").rows
    assert [(r.text, r.completions, r.ranking, r.models) for r in flat] == [
        ("Is it ok to eat raw cookie dough?", ["Not advised: raw flour and eggs.", "Yes, always."], [[0], [1]], ["gpt-4", "llama-2-13b"]),
        ("Name a colour.", ["Red.", "Blue."], [[0, 1]], ["claude-2", "gpt-4"])]


def test_oasst_trees_become_items_ranked_by_their_replies_ranks():
    first, second = read("oasst.jsonl").rows
    assert first.text == "How do I boil an egg?" and first.ranking == [[0], [2], [1]]
    assert second.messages == [{"role": "user", "content": "How do I boil an egg?"},
                               {"role": "assistant", "content": "Put it in boiling water for 8 minutes."},
                               {"role": "user", "content": "And a soft one?"}]
    assert second.completions == ["About 6 minutes.", "20 minutes."]  # the deleted reply is left out
    [tree] = read("oasst_trees.jsonl").rows  # the nested export: rank 0 (The Hobbit) best
    best = tree.completions[tree.ranking[0][0]]
    assert tree.text == "Recommend a book." and best == "The Hobbit, for a light read." and len(tree.ranking) == 2


def test_auto_detection_refuses_an_ambiguous_or_unknown_file_naming_the_candidates():
    both = json.dumps({"chosen": "a", "rejected": "b", "completions": ["x", "y"], "scores": [1, 2]}).encode()
    with pytest.raises(BadImportFile, match=r"fit more than one format \(scored, trl\)"):
        formats.read(both, "f.jsonl")
    with pytest.raises(BadImportFile, match="cannot tell the format from the columns \\['answer', 'question'\\]"):
        formats.read(json.dumps({"question": "q", "answer": "a"}).encode(), "f.jsonl")
    with pytest.raises(BadImportFile, match="a CSV cannot"):
        formats.read(b"prompt,completions\np,x\n", "f.csv", fmt="scored")


@pytest.mark.parametrize("conversational", ["no", "yes"])
def test_the_pairs_export_imports_back_into_an_empty_store_and_exports_the_same_pairs(db, tmp_path, conversational):
    ids = add_items(db, 3)
    for who, groups in (("ann", [[0], [1], [2, 3]]), ("bob", [[3], [2], [1], [0]])):
        me = annotation.annotator_id(db, who)
        for item in ids:
            annotation.submit_ranking(db, item, me, groups, [0, 1, 2, 3])
    for fmt in ("jsonl", "parquet"):
        path = tmp_path / f"pairs-{conversational}.{fmt}"
        export.write_export(db, "pairs", fmt, path, conversational=conversational)
        fresh = open_db(tmp_path / f"fresh-{conversational}-{fmt}.db")
        counts = formats.import_read(fresh, formats.read(path.read_bytes(), path.name), "again")
        assert counts["format"] == "trl" and counts["rankings"] == export.count_rows(db, "pairs")
        assert pair_texts(fresh) == pair_texts(db)
        assert {r[0] for r in fresh.execute("SELECT DISTINCT a.name FROM rankings r JOIN annotators a ON a.id = r.annotator_id")} == {"ann", "bob"}


@pytest.mark.slow
def test_the_command_line_names_every_error_writes_rejects_imports_the_rest_and_catches_the_statistics_up(db, db_path, tmp_path):
    good = [json.dumps({"prompt": f"p{i}", "chosen": "yes", "rejected": "no"}) for i in range(6)]
    bad = ['{"prompt": "p", "chosen": 5, "rejected": "no"}', "not json", '{"prompt": "", "chosen": "a", "rejected": "b"}']
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(good[:3] + bad + good[3:]))
    command = [sys.executable, "-m", "data", "--db", str(db_path), "import", str(path), "--set", "mine", "--annotator", "ext"]
    refused = subprocess.run(command + ["--rejects", str(tmp_path / "rejects.jsonl")], capture_output=True, text=True)
    assert refused.returncode == 2 and "3 lines are refused. Nothing was imported." in refused.stderr
    assert all(f"line {n}:" in refused.stderr for n in (4, 5, 6))
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 3
    assert db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 0
    done = subprocess.run(command + ["--skip-invalid"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["format"], result["rankings"], result["lines_left_out"]) == ("trl", 6, 3)
    assert "read 6 of 6 new rankings" in done.stderr  # the statistics caught up in the same command
    assert db.execute("SELECT last_ranking_id FROM stats_state").fetchone()[0] == db.execute("SELECT MAX(id) FROM rankings").fetchone()[0]
    again = json.loads(subprocess.run(command + ["--skip-invalid"], capture_output=True, text=True).stdout)
    assert (again["rankings"], again["already_present"]) == (0, 6)  # idempotent
    assert quality.refresh(db) == 0


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "annotator": "\\u001b[31mred"}', "no control characters"),
    ('{"model_a": "x", "model_b": "y", "winner": "model_c", "prompt": "p", "response_a": "a", "response_b": "b"}',
     "'winner' must be one of"),
    ('{"model_a": "x", "model_b": "y", "winner": "tie", "prompt": "p", "response_a": "a", "response_b": "b", '
     '"tstamp": 1e300}', "'tstamp' must be a Unix time"),
    ('{"prompt": "p", "completions": ["a", "b"], "scores": [1]}', "'scores' must be a list of 2 numbers"),
    ('{"message_id": "m", "parent_id": null, "role": "robot", "text": "t"}', "needs 'message_id', 'role'"),
])
def test_hostile_or_broken_lines_get_a_message_with_their_line(line, message):
    data = (line + "\n").encode()
    fmt = "oasst" if "message_id" in line else "auto"
    with pytest.raises(BadImportFile, match=message) as error:
        formats.read(data, "x.jsonl", fmt=fmt)
    assert error.value.line == 1
