"""People spot-check the reward model's favourite pairs of a new generator: queued as ordinary items served first,
judged by the share of rankings that agree with the reward model; a version people disagree on is not made active."""

import pytest

from data import annotation, items, prompt_sets, queue, spot_checks, versions

EXAMPLES = [{"prompt": f"question {i}", "before": f"a plain answer {i}", "after": f"a rewarded answer {i}",
             "before_reward": 0.0, "after_reward": 1.0} for i in range(3)]


def accounts_for(db, *names: str) -> None:
    """People who can log in (a spot check counts who is served it, and only accounts can be)."""
    from data import accounts

    for name in names:
        accounts.create_user(db, name, f"{name}-password-1")


@pytest.fixture
def queued(db, tmp_path):
    accounts_for(db, "alice", "bob", "cy")
    items.ensure_prompt_set(db, "ordinary")
    prompt_sets.configure(db, "ordinary", priority=5)
    prompt_id, _ = items.add_prompt(db, "ordinary", "an ordinary question")
    items.add_item(db, prompt_id, [items.NewCompletion("x"), items.NewCompletion("y")])
    start = versions.register_version(db, "generator", "start", str(tmp_path / "start"))
    new = versions.register_version(db, "generator", "policy-1", str(tmp_path / "new"), parent_id=start)
    version, start_version = versions.get_version(db, new), versions.get_version(db, start)
    pairs = spot_checks.favourites(EXAMPLES + [{**EXAMPLES[0], "after_reward": -1.0}], 8)
    assert len(pairs) == 3  # the pair the reward model does not prefer the new answer on is left out
    assert spot_checks.queue_pairs(db, version, start_version, pairs, queued_by="job 7") == {"set": "spot-check-policy-1", "pairs": 3}
    return new


def rank_spot_checks(db, version_id: int, names: list[str], prefer_new: bool) -> None:
    for name in names:
        me = annotation.annotator_id(db, name)
        while (item := queue.next_item(db, me)) and item.prompt_set == "spot-check-policy-1":
            new = db.execute("SELECT position FROM completions WHERE item_id = ? AND generator_version_id = ?",
                             [item.id, version_id]).fetchone()[0]
            groups = [[new], [1 - new]] if prefer_new else [[1 - new], [new]]
            annotation.submit_ranking(db, item.id, me, groups, annotation.display_order(item.id, me, 2))


def test_the_favourites_are_served_first_three_times_each_with_both_versions_named(db, queued):
    spot = prompt_sets.get_set(db, "spot-check-policy-1")
    assert spot["priority"] == 6 and spot["rankings_wanted"] == 3 and spot["status"] == "active"
    item = queue.next_item(db, annotation.annotator_id(db, "alice"))
    assert item.prompt_set == "spot-check-policy-1"  # before the ordinary set of priority 5
    made_by = db.execute("SELECT generator_version_id FROM completions WHERE item_id = ? ORDER BY position", [item.id])
    assert [row[0] for row in made_by] == [queued, queued - 1]  # the new answer and the starting one
    actors = db.execute("SELECT DISTINCT actor FROM audit_log WHERE target = 'spot-check-policy-1'").fetchall()
    assert actors == [("job 7",)]  # the job that queued them, not "command line"


def test_people_who_prefer_the_old_answers_stop_the_version_being_made_active(db, queued):
    rank_spot_checks(db, queued, ["alice"], prefer_new=False)
    early = spot_checks.verdict(db, queued)
    assert early["rankings"] == 3 and not early["gamed"] and "a verdict from 6" in early["sentence"]
    rank_spot_checks(db, queued, ["bob", "cy"], prefer_new=False)
    verdict = spot_checks.verdict(db, queued)
    assert verdict["rankings"] == 9 and verdict["agreement"] == 0.0 and verdict["gamed"]
    assert verdict["sentence"].startswith("the reward model is being gamed")
    with pytest.raises(ValueError, match="not made active: the reward model is being gamed"):
        spot_checks.activate(db, queued)
    assert not versions.get_version(db, queued)["is_active"]


def test_people_who_agree_with_the_reward_model_let_it_be_made_active(db, queued):
    rank_spot_checks(db, queued, ["alice", "bob"], prefer_new=True)
    verdict = spot_checks.verdict(db, queued)
    assert verdict["agreement"] == 1.0 and not verdict["gamed"] and verdict["low"] > 0.5
    spot_checks.activate(db, queued, by="test")
    assert versions.get_version(db, queued)["is_active"]


def test_a_tie_counts_half_and_a_version_without_spot_checks_has_no_verdict(db, queued):
    for name in ("alice", "bob"):
        me = annotation.annotator_id(db, name)
        while (item := queue.next_item(db, me)) and item.prompt_set == "spot-check-policy-1":
            annotation.submit_ranking(db, item.id, me, [[0, 1]], annotation.display_order(item.id, me, 2))
    assert spot_checks.verdict(db, queued)["agreement"] == 0.5
    assert spot_checks.verdict(db, queued - 1) is None


def test_a_job_asked_to_activate_waits_for_people_while_pairs_are_queued():
    assert spot_checks.held_for_people(True, "passes", EXAMPLES)[0] is False
    assert "people first rank" in spot_checks.held_for_people(True, "passes", EXAMPLES)[1]
    assert spot_checks.held_for_people(True, "passes", []) == (True, "passes")
    assert spot_checks.held_for_people(False, "below the gate", EXAMPLES) == (False, "below the gate")


def test_checkpoints_are_spot_checked_apart_and_the_version_is_judged_on_its_final_one(db, tmp_path):
    """Issue 25, item 5: agreement per checkpoint against KL; the gate reads the last checkpoint only."""
    start = versions.register_version(db, "generator", "start", str(tmp_path / "start"))
    new = versions.register_version(db, "generator", "policy-1", str(tmp_path / "new"), parent_id=start)
    pairs = ([spot_checks.at_checkpoint(e, 5, 0.04) for e in EXAMPLES]
             + [spot_checks.at_checkpoint(e, 10, 0.81) for e in EXAMPLES[:2]])
    spot_checks.queue_pairs(db, versions.get_version(db, new), versions.get_version(db, start), pairs)
    for name in ("alice", "bob", "cy"):  # people agree with the reward at step 5, and prefer the old answers at step 10
        me = annotation.annotator_id(db, name)
        while (item := queue.next_item(db, me)) and item.prompt_set == "spot-check-policy-1":
            position, params = db.execute("SELECT position, params FROM completions WHERE item_id = ? AND generator_version_id = ?",
                                          [item.id, new]).fetchone()
            groups = [[position], [1 - position]] if '"step": 5' in params else [[1 - position], [position]]
            annotation.submit_ranking(db, item.id, me, groups, annotation.display_order(item.id, me, 2))
    rows = spot_checks.checkpoint_agreement(db, new)
    assert [(r["step"], r["kl"], r["pairs"], r["rankings"], r["agreement"]) for r in rows] == [(5, 0.04, 3, 9, 1.0), (10, 0.81, 2, 6, 0.0)]
    assert rows[0]["low"] > 0.5 and rows[1]["high"] < 0.5
    verdict = spot_checks.verdict(db, new)
    assert (verdict["pairs"], verdict["rankings"], verdict["gamed"]) == (2, 6, True)  # step 10's alone
    assert "(at the final checkpoint, step 10; the earlier ones are charted on Policy update)" in verdict["sentence"]
    with pytest.raises(ValueError, match="the reward model is being gamed"):
        spot_checks.activate(db, new)


def test_a_pair_two_checkpoints_wrote_alike_is_queued_once_and_marked_with_the_first():
    final = {"val/kl": 0.9, "examples": [EXAMPLES[0]]}
    checkpoints = [{"step": 1, "val/kl": 0.1, "examples": EXAMPLES[:2]}, {"step": 2, "val/kl": 0.2, "examples": EXAMPLES[1:2]},
                   {"step": 3, "val/kl": 0.9, "examples": [EXAMPLES[2]]}]  # step 3 is the final weights: its pairs are final's
    pairs, earlier = spot_checks.pairs_to_queue(checkpoints, 3, final, 8)
    assert [(p["prompt"], p["step"]) for p in pairs] == [("question 1", 1), ("question 0", 3)] and earlier == 1


def test_a_single_pair_wants_the_rankings_a_verdict_needs(db, tmp_path):
    start = versions.register_version(db, "generator", "start", str(tmp_path / "start"))
    new = versions.register_version(db, "generator", "policy-1", str(tmp_path / "new"), parent_id=start)
    accounts_for(db, "alice", "bob", "cy", "dee", "eve", "fay")
    spot_checks.queue_pairs(db, versions.get_version(db, new), versions.get_version(db, start), EXAMPLES[:1])
    assert prompt_sets.get_set(db, "spot-check-policy-1")["rankings_wanted"] == 6  # 1 pair x 6 rankings, not 3
    rank_spot_checks(db, new, ["alice", "bob", "cy"], prefer_new=False)
    verdict = spot_checks.verdict(db, new)
    assert (verdict["rankings"], verdict["wanted"], verdict["gamed"]) == (3, 6, False)
    assert "3 of 6 rankings of the reward model's favourite pairs so far (a verdict from 6)" in verdict["sentence"]


def test_the_spot_check_is_served_to_the_runs_people_under_its_guidelines_and_says_when_they_are_too_few(db, tmp_path):
    from data import accounts, guidelines

    admin = accounts.create_user(db, "admin", "admin-password", role="admin")
    accounts_for(db, "ann", "ben", "cat")
    items.ensure_prompt_set(db, "support")
    prompt_sets.configure(db, "support", assign=["ann", "ben"])
    guidelines.save_guidelines(db, "support", "Prefer the answer that solves the customer's problem.", admin)
    start = versions.register_version(db, "generator", "start", str(tmp_path / "start"))
    new = versions.register_version(db, "generator", "policy-1", str(tmp_path / "new"), parent_id=start)
    spot_checks.queue_pairs(db, versions.get_version(db, new), versions.get_version(db, start), EXAMPLES[:2], ["support"])
    spot = prompt_sets.get_set(db, "spot-check-policy-1")
    assert spot["assigned"] == ["ann", "ben"] and spot["rankings_wanted"] == 2  # one ranking each, no more
    assert guidelines.current_guidelines(db, "spot-check-policy-1").text.startswith("Prefer the answer that solves")
    served = queue.next_item(db, annotation.annotator_id(db, "cat"))
    assert served is None or served.prompt_set != "spot-check-policy-1"  # not one of the support set's people
    rank_spot_checks(db, new, ["ann", "ben"], prefer_new=True)
    verdict = spot_checks.verdict(db, new)
    assert verdict["rankings"] == 4 and not verdict["gamed"]
    assert verdict["sentence"].startswith("4 of 4 rankings of the reward model's 2 favourite pairs: too few for a verdict, "
                                          "which needs 6 rankings (only 2 people are served it, and each ranks a pair once")
    # a run over every set (DPO without prompt sets), or a set served to everyone: the check is served to everyone
    items.ensure_prompt_set(db, "open")
    assert spot_checks.served_to(db, []) == [] and spot_checks.served_to(db, ["support", "open"]) == []


def test_a_cut_answer_is_queued_marked_as_cut(db, tmp_path):
    """A spot check showed two answers cut mid-sentence with no mark (walk, 2026-12-06): the evaluation's examples now
    carry each answer's length and end, and the queued completions store them as generated ones do."""
    start = versions.register_version(db, "generator", "start", str(tmp_path / "start"))
    new = versions.register_version(db, "generator", "policy-1", str(tmp_path / "new"), parent_id=start)
    cut = {**EXAMPLES[0], "after_tokens": 64, "after_ended": False, "before_tokens": 12, "before_ended": True}
    spot_checks.queue_pairs(db, versions.get_version(db, new), versions.get_version(db, start), [cut])
    [(item,)] = db.execute("""SELECT i.id FROM items i JOIN prompts p ON p.id = i.prompt_id
                              WHERE p.prompt_set = 'spot-check-policy-1'""").fetchall()
    completions = annotation.get_item(db, item).completions
    assert [(c.text, c.n_tokens, c.cut) for c in completions] == [("a rewarded answer 0", 64, True), ("a plain answer 0", 12, False)]
