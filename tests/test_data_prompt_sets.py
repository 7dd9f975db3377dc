"""Prompt sets as projects: status, priority, assigned annotators, overlap targets, progress (issue 20)."""

import json
import subprocess
import sys

import pytest

from data import annotation, builtin, gold, items, jobs, prompt_sets, queue, uncertainty
from data.items import BUILTIN_SET
from tests.conftest import add_items


def served_set(db, who: str) -> str | None:
    item = queue.next_item(db, annotation.annotator_id(db, who))
    return None if item is None else item.prompt_set


@pytest.fixture
def demo(db):
    builtin.init_db(db)
    return db


def test_the_demo_is_paused_when_the_first_own_set_gets_items(demo):
    assert prompt_sets.get_set(demo, BUILTIN_SET)["status"] == "active"
    add_items(demo, 3, prompt_set="mine")
    assert prompt_sets.get_set(demo, BUILTIN_SET)["status"] == "paused"
    assert served_set(demo, "alice") == "mine"
    prompt_sets.configure(demo, BUILTIN_SET, status="active")  # the admin wants it back: a second set leaves it alone
    add_items(demo, 1, prompt_set="second")
    assert prompt_sets.get_set(demo, BUILTIN_SET)["status"] == "active"


def test_a_set_with_a_higher_priority_is_served_before_the_demo(demo):
    add_items(demo, 2, prompt_set="mine")
    prompt_sets.configure(demo, BUILTIN_SET, status="active")
    assert served_set(demo, "alice") == BUILTIN_SET  # equal priority: the oldest items first
    prompt_sets.configure(demo, "mine", priority=5)
    assert served_set(demo, "bob") == "mine"


def test_a_paused_set_serves_nothing_even_an_item_already_held(db):
    add_items(db, 2, prompt_set="only")
    held = queue.next_item(db, annotation.annotator_id(db, "alice"))
    assert held.prompt_set == "only"
    prompt_sets.configure(db, "only", status="paused")
    assert served_set(db, "alice") is None and served_set(db, "bob") is None
    prompt_sets.configure(db, "only", status="archived")
    assert served_set(db, "carol") is None


def test_an_unassigned_annotator_never_sees_an_assigned_set(db):
    add_items(db, 4, prompt_set="private")
    annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    db.conn.commit()
    prompt_sets.configure(db, "private", assign=["alice"])
    assert served_set(db, "bob") is None
    assert served_set(db, "alice") == "private"
    assert queue.items_left(db, annotation.annotator_id(db, "bob")) == 0
    prompt_sets.configure(db, "private", assign=[])
    assert served_set(db, "bob") == "private"
    with pytest.raises(ValueError, match="no annotator named 'nobody'"):
        prompt_sets.configure(db, "private", assign=["nobody"])


def test_the_overlap_share_wants_more_rankings_of_its_items_only(db):
    add_items(db, 200, prompt_set="s")
    prompt_sets.configure(db, "s", overlap_share=0.2, overlap_rankings=3)
    [row] = prompt_sets.progress(db)
    overlap_items = (row["wanted"] - 200) / 2
    assert 38 <= overlap_items == row["overlap_items"] <= 42  # a fifth of 200, give or take 2, fixed in advance
    prompt_sets.configure(db, "s", overlap_share=1.0)
    assert prompt_sets.progress(db)[0]["wanted"] == 600


@pytest.mark.parametrize("before", [0, 1, 5, 17])
def test_a_small_set_gets_its_overlap_share_evenly_not_by_chance(db, before):
    """The Chromium walk: at a share of 0.5, a random draw per item left 0 of 6 items for agreement."""
    add_items(db, before, prompt_set="earlier")  # the new set's ids start anywhere
    add_items(db, 6, prompt_set="small")
    prompt_sets.configure(db, "small", overlap_share=0.5, overlap_rankings=2)
    assert 2 <= next(p for p in prompt_sets.progress(db) if p["name"] == "small")["overlap_items"] <= 4


def test_an_item_in_the_overlap_share_is_served_to_a_second_annotator(db):
    [item] = add_items(db, 1, prompt_set="s")
    first = queue.next_item(db, annotation.annotator_id(db, "alice"))
    annotation.submit_ranking(db, first.id, annotation.annotator_id(db, "alice"), [[0], [1], [2], [3]],
                              annotation.display_order(first.id, annotation.annotator_id(db, "alice"), 4))
    assert served_set(db, "bob") is None  # N = 1: done
    prompt_sets.configure(db, "s", overlap_share=1.0, overlap_rankings=2)
    assert served_set(db, "bob") == "s"


def test_progress_counts_rankings_against_the_targets(db):
    from data import accounts

    ids = add_items(db, 3, prompt_set="s")
    accounts.create_user(db, "alice", "alice-password")  # an account that may rank: the ETA counts on her
    me = annotation.annotator_id(db, "alice")
    for _ in ids[:2]:
        item = queue.next_item(db, me)
        annotation.submit_ranking(db, item.id, me, [[0], [1], [2], [3]], annotation.display_order(item.id, me, 4))
    [row] = prompt_sets.progress(db)
    assert (row["items"], row["wanted"], row["done"], row["complete"]) == (3, 3, 2, 2)
    assert row["per_day"] == 2.0 and row["eta_days"] == 0.5  # a set younger than a day: its pace per day since it began
    prompt_sets.configure(db, "s", status="paused")
    [row] = prompt_sets.progress(db)
    assert row["eta_days"] is None  # paused: not served, no ETA (a walk saw "about 51 days left" on a paused set)


def test_items_everyone_has_answered_are_called_unfinishable_not_given_an_eta(db):
    """The Chromium walk: two annotators, N = 3, skips: the Overview promised an ETA for rankings nobody could give."""
    from data import accounts

    ids = add_items(db, 2, prompt_set="s")
    items.set_rankings_wanted(db, "s", 3)
    people = {who: accounts.create_user(db, who, f"{who}-password") and annotation.annotator_id(db, who) for who in ("alice", "bob")}
    for who, me in people.items():
        annotation.submit_ranking(db, ids[0], me, [[0], [1], [2], [3]], [0, 1, 2, 3])
    annotation.submit_ranking(db, ids[1], people["alice"], [[0], [1], [2], [3]], [0, 1, 2, 3])
    assert prompt_sets.unreachable(db, "s") == (1, 1)  # item 0: both ranked it, one ranking short; item 1: bob can
    annotation.skip_item(db, ids[1], people["bob"], [0, 1, 2, 3])
    [row] = prompt_sets.progress(db)
    assert (row["wanted"], row["done"], row["stuck_items"], row["eta_days"]) == (6, 3, 2, None)
    accounts.create_user(db, "carol", "carol-password")  # someone who may still rank both
    [row] = prompt_sets.progress(db)
    assert row["stuck_items"] == 0 and row["eta_days"] == 1.0  # 3 rankings left at 3 a day
    prompt_sets.configure(db, "s", assign=["alice", "bob"])  # carol is not served this set
    assert prompt_sets.unreachable(db, "s") == (2, 3)


SETTERS = {
    "configure": lambda db, name: prompt_sets.configure(db, name, priority=1),
    "rankings wanted": lambda db, name: items.set_rankings_wanted(db, name, 3),
    "queue": lambda db, name: items.set_queue(db, name, 3, "uncertain", 0.2),
    "gold rate": lambda db, name: gold.set_gold_every(db, name, 5),
    "repeats": lambda db, name: annotation.set_repeat_settings(db, name, 0.1, 5),
    "queue order": lambda db, name: uncertainty.set_queue_order(db, name, "uncertain"),
}


@pytest.mark.parametrize("setter", SETTERS)
def test_every_setter_refuses_an_unknown_set_and_names_the_known_ones(db, setter):
    add_items(db, 1, prompt_set="s")
    before = list(db.query("SELECT * FROM prompt_sets"))
    with pytest.raises(LookupError, match="there is no prompt set named 'nope': the sets are s$"):
        SETTERS[setter](db, "nope")
    assert list(db.query("SELECT * FROM prompt_sets")) == before
    SETTERS[setter](db, "s")  # the same call on a set that exists goes through


def test_an_unknown_set_with_no_set_at_all_says_how_to_make_one(db):
    with pytest.raises(prompt_sets.UnknownSet, match="none yet, import prompts to make one"):
        gold.set_gold_every(db, "nope", 5)


def test_settings_errors_name_the_remedy(db):
    add_items(db, 1, prompt_set="s")
    with pytest.raises(LookupError, match="no prompt set named 'nope': the sets are s"):
        prompt_sets.configure(db, "nope", priority=1)
    with pytest.raises(ValueError, match="status must be one of active, paused, archived"):
        prompt_sets.configure(db, "s", status="done")
    with pytest.raises(ValueError, match="at least 2 rankings"):
        prompt_sets.configure(db, "s", overlap_rankings=1)


def test_a_set_is_deleted_only_when_nothing_of_it_was_answered(db):
    add_items(db, 2, prompt_set="ranked")
    add_items(db, 2, prompt_set="fresh")
    prompt_sets.configure(db, "fresh", priority=-1)
    me = annotation.annotator_id(db, "alice")
    item = queue.next_item(db, me)
    annotation.submit_ranking(db, item.id, me, [[0], [1], [2], [3]], annotation.display_order(item.id, me, 4))
    with pytest.raises(ValueError, match="archive it instead"):
        prompt_sets.delete_set(db, "ranked")
    assert prompt_sets.delete_set(db, "fresh") == {"deleted": "fresh", "items": 2, "prompts": 2}
    with pytest.raises(LookupError):
        prompt_sets.get_set(db, "fresh")


@pytest.mark.slow
def test_the_command_line_lists_and_changes_sets(db, db_path):
    add_items(db, 2, prompt_set="mine")
    annotation.annotator_id(db, "alice")
    db.conn.commit()
    run = lambda *args: subprocess.run([sys.executable, "-m", "data", "--db", str(db_path), *args],  # noqa: E731
                                       capture_output=True, text=True, cwd=jobs.PROJECT_ROOT)
    changed = json.loads(run("set", "mine", "--priority", "3", "--assign", "alice", "--overlap", "0.5",
                             "--overlap-rankings", "2", "--status", "paused").stdout)
    assert (changed["priority"], changed["assigned"], changed["overlap_share"], changed["status"]) == (3, ["alice"], 0.5, "paused")
    [listed] = json.loads(run("sets").stdout)
    assert listed["name"] == "mine" and listed["items"] == 2 and listed["assigned"] == ["alice"]
    assert json.loads(run("set", "mine", "--assign-all").stdout)["assigned"] == []
    refused = run("set", "mine", "--status", "done")
    assert refused.returncode == 2 and "invalid choice" in refused.stderr


def test_unanswered_items_with_a_cut_answer_can_be_withdrawn_and_generated_again(db, db_path):
    from data import items
    from data.items import NewCompletion

    items.ensure_prompt_set(db, "long")
    made = []
    for n, reasons in enumerate([("eos", "eos"), ("length", "eos"), ("eos", "length"), ("length", "length")]):
        prompt_id, _ = items.add_prompt(db, "long", f"Tell a long story {n}.")
        made.append(items.add_item(db, prompt_id, [NewCompletion(f"story {n} {r}", finish_reason=r, n_tokens=8) for r in reasons]))
    db.conn.commit()
    me = annotation.annotator_id(db, "alice")
    annotation.submit_ranking(db, made[3], me, [[0], [1]], [0, 1])  # answered: stays whatever its answers
    assert prompt_sets.cut_answers(db, "long") == {"completions": 8, "cut": 4, "withdrawable": 2}
    out = subprocess.run([sys.executable, "-m", "data", "--db", str(db_path), "set", "long", "--withdraw-cut"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["withdrawn_items"] == 2, out.stderr
    assert [row[0] for row in db.execute("SELECT id FROM items ORDER BY id")] == [made[0], made[3]]
    assert db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 4
    assert prompt_sets.cut_answers(db, "long")["withdrawable"] == 0


def test_a_set_of_prompts_without_items_wants_no_rankings_yet(db):
    """The walk: a new set of 8 prompts, nothing generated, read '0 of 8 rankings wanted (0 of 0 items complete)'."""
    items.ensure_prompt_set(db, "fresh")
    for i in range(8):
        items.add_prompt(db, "fresh", f"question {i}")
    row = next(r for r in prompt_sets.progress(db) if r["name"] == "fresh")
    assert (row["items"], row["wanted"], row["done"], row["eta_days"]) == (0, 0, 0, 0.0)
