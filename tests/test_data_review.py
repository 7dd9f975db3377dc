"""The review pass: queues, accept / reject / send back, exclusions from training and exports, exact statistics (issue 20)."""

import json
import random
import subprocess
import sys

import pytest

from data import annotation, export, jobs, leaderboard, quality, queue, review
from tests.conftest import add_items
from tests.test_data_leaderboard import random_rankings, reference_counts, stored_counts
from tests.test_data_quality import assert_equal_to_reference, rank_randomly
from tests.test_pages import start, unescaped
from training.rankings import load_rankings


def rank(db, who: str, item_id: int, flags=(), comment="") -> int:
    me = annotation.annotator_id(db, who)
    return annotation.submit_ranking(db, item_id, me, [[0], [1], [2], [3]], [0, 1, 2, 3], flags=list(flags),
                                     comment=comment).ranking_id


def test_all_bad_and_rejected_rankings_leave_training_and_the_pairs_export(db):
    first, second, third = add_items(db, 3)
    rank(db, "alice", first, flags=["all are bad"])
    kept = rank(db, "alice", second)
    rejected = rank(db, "alice", third, flags=["prompt unclear"])
    review.reject(db, rejected, "ranked without reading")
    assert [e.prompt for e in load_rankings(db)] == ["prompt 1"]
    assert len(load_rankings(db, keep_excluded=True)) == 3
    pairs = export.export_frame(db, "pairs")
    assert len(pairs) == 6 and export.count_rows(db, "pairs") == 6  # one ranking of 4: 6 pairs
    assert export.count_rows(db, "pairs", export.ExportFilter(keep_excluded=True)) == 18
    rankings = export.export_frame(db, "rankings")  # the rankings export keeps all, with the review columns
    assert list(rankings["review"]) == ["", "", "rejected"] and rankings["review_reason"].iloc[2] == "ranked without reading"
    assert kept


def test_the_queues_find_flags_comments_and_repeated_skips(db):
    ids = add_items(db, 3)
    flagged = rank(db, "alice", ids[0], flags=["offensive/unsafe"])
    commented = rank(db, "alice", ids[1], comment="B and C are the same")
    for who in ("bob", "carol"):
        annotation.skip_item(db, ids[2], annotation.annotator_id(db, who), [0, 1, 2, 3])
    assert [r["ranking_id"] for r in review.review_queue(db, "flagged")] == [flagged]
    assert [r["ranking_id"] for r in review.review_queue(db, "comments")] == [commented]
    assert {r["item_id"] for r in review.review_queue(db, "skipped")} == {ids[2]}
    assert review.queue_sizes(db) == {"flagged": 1, "comments": 1}
    review.accept(db, flagged, by="tester")
    assert review.queue_sizes(db)["flagged"] == 0
    with pytest.raises(ValueError, match="already reviewed"):
        review.reject(db, flagged, "changed my mind")
    with pytest.raises(ValueError, match="say why"):
        review.reject(db, commented, "  ")
    with pytest.raises(ValueError, match="unknown review queue"):
        review.review_queue(db, "nope")


def test_the_disagreement_queue_lists_only_items_whose_rankings_disagree(db):
    agreed, split = add_items(db, 2)
    for who in ("alice", "bob"):
        rank(db, who, agreed)
    rank(db, "alice", split)
    me = annotation.annotator_id(db, "bob")
    annotation.submit_ranking(db, split, me, [[3], [2], [1], [0]], [0, 1, 2, 3])
    assert {r["item_id"] for r in review.review_queue(db, "disagreement")} == {split}


def test_send_back_serves_the_item_to_another_annotator(db):
    [item] = add_items(db, 1)
    ranking = rank(db, "alice", item)
    assert queue.next_item(db, annotation.annotator_id(db, "bob")) is None  # N = 1: done
    review.send_back(db, ranking, by="tester")
    assert queue.next_item(db, annotation.annotator_id(db, "bob")).id == item
    assert queue.next_item(db, annotation.annotator_id(db, "alice")) is None  # not to the same annotator
    assert [(e["action"], e["by"], e["since"]) for e in review.review_events(db)] == [
        ("send back", "tester", "in the queue for another annotator")]


@pytest.mark.parametrize("team", [["alice", "rita", "bob"], ["alice", "rita"]])
def test_a_sent_back_item_is_not_served_to_the_reviewer_who_sent_it_back(app_db, team):
    """An admin who also ranks sent a ranking back and was served the item herself, with its old ranking and reason
    in mind (walk, 2026-12-07): it goes to another annotator, or, when the reviewer is the only other, back to its own."""
    from data import accounts, prompt_sets

    for name in team:
        accounts.create_user(app_db, name, f"{name}-password-1")
    [item] = add_items(app_db, 1, prompt_set="mine")
    prompt_sets.configure(app_db, "mine", assign=team)
    alices = rank(app_db, "alice", item)
    rita = annotation.annotator_id(app_db, "rita")
    went_back = review.send_back(app_db, alices, "read the prompt again", by="rita")
    assert queue.next_item(app_db, rita) is None and queue.items_left(app_db, rita) == 0
    assert review.others_who_can_rank(app_db, item) == len(team) - 2
    if "bob" in team:
        assert not went_back and queue.next_item(app_db, annotation.annotator_id(app_db, "bob")).id == item
    else:
        assert went_back and queue.next_item(app_db, annotation.annotator_id(app_db, "alice")).id == item


@pytest.mark.parametrize("seed_", [0, 1])
def test_statistics_after_rejections_equal_a_recount(db, seed_):
    rng = random.Random(seed_)
    ids = add_items(db, 20)
    rank_randomly(db, ids, [f"annotator-{i}" for i in range(4)], rng)
    quality.refresh(db)
    answered = [r[0] for r in db.execute("SELECT id FROM rankings WHERE skipped = 0 ORDER BY id")]
    for ranking_id in rng.sample(answered, 6):
        review.reject(db, ranking_id, "test")
    assert_equal_to_reference(db)


def test_leaderboard_counts_after_rejections_equal_a_recount(db):
    rng = random.Random(11)
    random_rankings(db, rng, 30)
    leaderboard.refresh(db)
    for ranking_id in rng.sample([r[0] for r in db.execute("SELECT id FROM rankings WHERE skipped = 0")], 8):
        review.send_back(db, ranking_id, by="tester")
    assert stored_counts(db) == reference_counts(db)


def test_a_reviewed_ranking_cannot_be_undone(db):
    from data import undo

    [item] = add_items(db, 1)
    ranking = rank(db, "alice", item)
    review.accept(db, ranking, by="tester")
    with pytest.raises(ValueError, match="nothing to undo"):
        undo.undo_last(db, annotation.annotator_id(db, "alice"))


def test_the_review_screen_rejects_with_a_reason(app_db):
    [item] = add_items(app_db, 1, prompt_set="mine")
    ranking = rank(app_db, "alice", item, flags=["all are bad"])
    at = start("pages/quality/review.py")
    assert not at.exception and list(at.dataframe[0].value["ranking"]) == [ranking]
    at.segmented_control(key="review-queue").set_value("pattern").run()  # empty: it says what would put a ranking there
    assert unescaped(at.info[0]).startswith("Nothing in this queue: no annotator's pace or pattern is off, judged once")
    at.segmented_control(key="review-queue").set_value("flagged").run()
    assert at.dataframe[0].value["stored order"].tolist() == ["A > B > C > D"]
    at.text_input(key=f"review-reason-{ranking}").input("every answer is fine, flag was a mistake")
    next(b for b in at.button if b.label == "Reject").click().run()
    assert not at.exception and f"Ranking {ranking}: reject recorded." in unescaped(at.success[0])
    assert app_db.execute("SELECT review, reviewed_by FROM rankings WHERE id = ?", [ranking]).fetchone() == ("rejected", "admin")
    assert list(at.dataframe[-1].value["action"]) == ["reject"]
    assert len(at.dataframe[-1].value["at"][0]) == len("2026-12-07 10:15")  # to the minute, as the other tables


def test_review_reaches_plain_rankings_and_each_queue_keeps_its_own_pick(app_db):
    """The walk (2026-12-07): a plain ranking could not be opened to accept it (no queue held it); switching from
    "flagged" to "with a comment" kept the flagged queue's ranking in the picker above a table that did not list it;
    a flag sent without a ranking read "skipped"; and the annotator's "of them sent back" counted it among rankings."""
    from data import accounts, queue

    for name in ("alice", "bob"):
        accounts.create_user(app_db, name, f"{name}-password-1")
    items = add_items(app_db, 3, prompt_set="mine")
    plain = rank(app_db, "alice", items[0])
    commented = rank(app_db, "bob", items[1], comment="B and C are close")
    flagged = annotation.skip_item(app_db, items[2], annotation.annotator_id(app_db, "alice"), [0, 1, 2, 3], 2.0,
                                   flags=["all are bad"]).ranking_id
    at = start("pages/quality/review.py")
    assert at.selectbox(key="review-pick-flagged").value["ranking_id"] == flagged
    assert at.dataframe[0].value["ranking given"].tolist() == ["no ranking, flagged all are bad"]
    assert any("ranked: **no ranking, flagged all are bad**" in unescaped(m) for m in at.markdown)
    at.segmented_control(key="review-queue").set_value("comments").run()
    assert at.selectbox(key="review-pick-comments").value["ranking_id"] == commented
    at.segmented_control(key="review-queue").set_value("recent").run()
    assert at.dataframe[0].value["ranking"].tolist() == [flagged, commented, plain]
    at.selectbox(key="review-whose").set_value("bob").run()  # a sample of one person's work
    assert at.dataframe[0].value["ranking"].tolist() == [commented]
    at.selectbox(key="review-whose").set_value("alice").run()
    assert at.dataframe[0].value["ranking"].tolist() == [flagged, plain]
    assert review.review_queue(app_db, "recent", annotator="alice") == review.review_queue(app_db, "recent")[::2]
    at.selectbox(key="review-pick-recent").set_value(next(o for o in at.selectbox(key="review-pick-recent").options
                                                          if o.startswith(f"ranking {plain} "))).run()
    next(b for b in at.button if b.label == "Accept").click().run()
    assert app_db.execute("SELECT review FROM rankings WHERE id = ?", [plain]).fetchone()[0] == "accepted"
    rank(app_db, "bob", items[2])  # the item is complete (N = 1) whatever happens to alice's flag
    alice = annotation.annotator_id(app_db, "alice")
    # the reviewer wants it ranked: a flag sent without a ranking goes back to its annotator, not to a queue that would
    # not serve the complete item to anyone (the verification walk: "send back recorded", and nothing happened)
    assert review.send_back(app_db, flagged, "rank them anyway", by="rita") is True
    assert queue.rejected_count(app_db, alice) == 0  # not one of her 1 ranking
    assert queue.next_item(app_db, alice).id == items[2]
    annotation.submit_ranking(app_db, items[2], alice, [[1], [0], [2], [3]], [0, 1, 2, 3])
    assert app_db.execute("SELECT skipped, review FROM rankings WHERE item_id = ? AND annotator_id = ?",
                          [items[2], alice]).fetchone() == (0, "")


def team_of_two_who_both_ranked(db) -> tuple[int, int, int]:
    """alice and bob, the only people set "mine" is served to, have both ranked its one item: (item, alice's, bob's)."""
    from data import accounts, prompt_sets

    for name in ("alice", "bob"):
        accounts.create_user(db, name, f"{name}-password-1")
    [item] = add_items(db, 1, prompt_set="mine")
    prompt_sets.configure(db, "mine", assign=["alice", "bob"])
    return item, rank(db, "alice", item, flags=["prompt unclear"]), rank(db, "bob", item)


def test_a_send_back_nobody_else_can_take_goes_back_to_its_annotator_and_the_redo_replaces_it(app_db):
    """A team of two who both ranked an item: sent back, it could never be finished (walk, 2026-12-06). It now goes
    back to the annotator who ranked it, next in their queue with the reason, and their new ranking replaces the
    rejected one, every count equal to a recount."""
    from data import audit, prompt_sets

    item, alices, bobs = team_of_two_who_both_ranked(app_db)
    alice, bob = annotation.annotator_id(app_db, "alice"), annotation.annotator_id(app_db, "bob")
    quality.refresh(app_db)
    leaderboard.refresh(app_db)
    assert review.others_who_can_rank(app_db, item) == 0 and review.goes_back_to_its_annotator(app_db, alices)
    assert review.send_back(app_db, alices, "you ranked A first, but A does not answer the question", by="rita")
    assert app_db.execute("SELECT n_rankings FROM items WHERE id = ?", [item]).fetchone()[0] == 1
    assert prompt_sets.unreachable(app_db, "mine") == (0, 0)  # alice can still give it
    assert queue.next_item(app_db, bob) is None
    assert (queue.items_left(app_db, alice), queue.items_left(app_db, bob)) == (1, 0)
    assert review.review_events(app_db)[0]["since"] == "with its annotator, to redo"
    served = queue.next_item(app_db, alice)
    assert served.id == item and served.sent_back == {"ranking_id": alices, "by": "rita",
                                                     "reason": "you ranked A first, but A does not answer the question"}
    assert queue.next_item(app_db, alice).id == item  # held for her, as any served item
    redo = annotation.submit_ranking(app_db, item, alice, [[3], [2], [1], [0]], [0, 1, 2, 3])
    assert redo.was_new and redo.ranking_id != alices
    assert app_db.execute("SELECT id, review, returned FROM rankings WHERE annotator_id = ?", [alice]).fetchall() == [(redo.ranking_id, "", 0)]
    assert app_db.execute("SELECT n_rankings FROM items WHERE id = ?", [item]).fetchone()[0] == 2
    assert queue.next_item(app_db, alice) is None and queue.sent_back(app_db, item, alice) is None
    assert review.review_events(app_db)[0]["since"] == "redone by its annotator"  # the Review screen's audit log says so
    assert annotation.submit_ranking(app_db, item, alice, [[0], [1], [2], [3]], [0, 1, 2, 3]).was_new is False
    [redone] = [e for e in audit.recent(app_db) if e["action"] == "ranking redone after a send back"]
    assert redone["who"] == "alice" and redone["target"] == f"ranking {alices}"
    assert "was: [[0], [1], [2], [3]]" in redone["detail"] and "sent back by: rita" in redone["detail"]
    quality.refresh(app_db)
    leaderboard.refresh(app_db)
    assert_equal_to_reference(app_db)
    assert stored_counts(app_db) == reference_counts(app_db)
    assert bobs


def test_a_send_back_nobody_at_all_can_take_says_so_before_and_after(app_db):
    """The annotator who ranked it is no longer among those the set is served to: the item stays unfinished, and
    the screen says so before the click and after it."""
    from data import prompt_sets

    item, alices, _ = team_of_two_who_both_ranked(app_db)
    prompt_sets.configure(app_db, "mine", assign=["bob"])
    assert not review.goes_back_to_its_annotator(app_db, alices)
    at = start("pages/quality/review.py")
    assert any("nobody else among the people this item's set is served to can rank it" in unescaped(c) for c in at.caption)
    next(b for b in at.button if b.label == "Send back").click().run()
    assert not at.exception and unescaped(at.warning[0]).startswith(f"Ranking {alices}: sent back, but nobody else")
    assert queue.next_item(app_db, annotation.annotator_id(app_db, "alice")) is None


def test_the_review_screen_sends_back_to_its_annotator_who_sees_the_reason(app_db):
    item, alices, _ = team_of_two_who_both_ranked(app_db)
    at = start("pages/quality/review.py")
    assert any("so it goes back to alice, next in their queue (after an item they hold now) with your reason" in unescaped(c) for c in at.caption)
    at.text_input(key=f"review-reason-{alices}").input("B repeats the prompt: it is not the best")
    next(b for b in at.button if b.label == "Send back").click().run()
    assert not at.exception and unescaped(at.success[0]).startswith(f"Ranking {alices}: sent back to alice, who ranks the item again")
    table = at.dataframe[0].value
    assert table.loc[table["ranking"] == alices, "review"].tolist() == ["sent back"]  # not a bare "rejected"
    mine = start(user="alice")
    assert not mine.exception and unescaped(mine.warning[0]) == (
        "admin sent your ranking of this item back: “B repeats the prompt: it is not the best”. Rank it again: your "
        "new answer replaces the earlier one.")
    mine.radio(key="task").set_value("My rankings").run()
    assert mine.dataframe[0].value["status"].tolist() == ["sent back to you: rank it again (next in your queue)"]
    assert item


@pytest.mark.parametrize("team", [["alice", "admin"], ["alice", "admin", "bob"]])
def test_the_review_screen_says_where_a_send_back_goes_never_to_the_reviewer(app_db, team):
    """The screen said "send back recorded" and its admin was served the item next (walk, 2026-12-07)."""
    from data import accounts, prompt_sets

    for name in team[2:] + ["alice"]:
        accounts.create_user(app_db, name, f"{name}-password-1")
    [item] = add_items(app_db, 1, prompt_set="mine")
    prompt_sets.configure(app_db, "mine", assign=team)
    alices = rank(app_db, "alice", item, flags=["prompt unclear"])
    at = start("pages/quality/review.py")
    goes_back = any("so it goes back to alice" in unescaped(c) for c in at.caption)  # before the click
    next(b for b in at.button if b.label == "Send back").click().run()
    said = unescaped(at.success[0])
    if "bob" in team:
        assert not goes_back and said == (f"Ranking {alices}: sent back. The queue serves the item to the one other "
                                          "person its set is served to who has not ranked it (not alice, who ranked it, "
                                          "nor you, the reviewer).")
    else:  # the reviewer is the only other person: back to alice, as the screen said before the click
        assert goes_back and said.startswith(f"Ranking {alices}: sent back to alice, who ranks the item again")
    assert queue.next_item(app_db, annotation.annotator_id(app_db, "admin")) is None


@pytest.mark.slow
def test_the_command_line_lists_and_decides(db, db_path):
    [item] = add_items(db, 1)
    ranking = rank(db, "alice", item, comment="unsure")
    run = lambda *args: subprocess.run([sys.executable, "-m", "data", "--db", str(db_path), "review", *args],  # noqa: E731
                                       capture_output=True, text=True, cwd=jobs.PROJECT_ROOT)
    assert [r["ranking_id"] for r in json.loads(run("--queue", "comments").stdout)] == [ranking]
    refused = run("reject", str(ranking))
    assert refused.returncode == 2 and "say why" in refused.stderr
    assert json.loads(run("reject", str(ranking), "--reason", "guessing").stdout) == {"ranking": ranking, "action": "reject"}


def test_reviewers_decide_on_others_rankings_never_their_own_and_annotators_not_at_all(db):
    from data import accounts

    first, second = add_items(db, 2)
    reviewer = accounts.create_user(db, "rita", "a-long-password", role="reviewer")
    annotator = accounts.create_user(db, "alice", "a-long-password")
    own = annotation.submit_ranking(db, first, reviewer.id, [[0], [1], [2], [3]], [0, 1, 2, 3], flags=["prompt unclear"]).ranking_id
    theirs = rank(db, "alice", second, flags=["prompt unclear"])
    with pytest.raises(ValueError, match="your own"):
        review.accept(db, own, actor=reviewer)
    with pytest.raises(accounts.AuthError, match="no longer a reviewer"):
        review.reject(db, own, "looks rushed", actor=annotator)
    review.reject(db, theirs, "looks rushed", actor=reviewer)
    assert review.review_events(db)[0]["by"] == "rita"
    accounts.set_role(db, None, "rita", "annotator")  # demoted: the old session can decide nothing more
    with pytest.raises(accounts.AuthError):
        review.accept(db, own, actor=reviewer)


def test_the_pattern_queue_finds_the_rushed_the_all_ties_and_the_first_shown_best(db):
    ids = add_items(db, 12)
    rng = random.Random(3)
    for who in ("ann", "bob", "cat", "speedy", "firsty"):
        me = annotation.annotator_id(db, who)
        for item in ids:
            order = annotation.display_order(item, me, 4)
            if who == "speedy":
                groups, seconds = [[0, 1, 2, 3]], 2.0
            elif who == "firsty":
                groups, seconds = [[p] for p in order], 30.0
            else:
                positions = [0, 1, 2, 3]
                rng.shuffle(positions)
                groups, seconds = [[p] for p in positions], 30.0 + rng.random()
            annotation.submit_ranking(db, item, me, groups, order, seconds=seconds)
    why = review.off_pattern(db)
    assert set(why) == {"speedy", "firsty"}, why
    assert "against the team's" in why["speedy"] and "100% of pairs tied" in why["speedy"]
    assert "first completion shown ranked best 100% of 12 times (chance: 25%)" in why["firsty"]
    queue = review.review_queue(db, "pattern")
    assert {r["annotator"] for r in queue} == {"speedy", "firsty"} and len(queue) == 24 and all(r["why"] for r in queue)


def test_a_huge_comment_or_demonstration_is_refused(db):
    """Finding 18 of the third trust pass: a 20 MB comment was stored."""
    from data import demonstrations

    [item] = add_items(db, 1)
    me = annotation.annotator_id(db, "alice")
    with pytest.raises(ValueError, match="keep it under 5,000"):
        annotation.submit_ranking(db, item, me, [[0], [1], [2], [3]], [0, 1, 2, 3], comment="x" * 20_000_000)
    prompt_id = db.execute("SELECT prompt_id FROM items WHERE id = ?", [item]).fetchone()[0]
    with pytest.raises(ValueError, match="keep a demonstration under 50,000"):
        demonstrations.save_demonstration(db, prompt_id, me, "y" * 60_000)
    assert db.execute("SELECT (SELECT COUNT(*) FROM rankings) + (SELECT COUNT(*) FROM demonstrations)").fetchone()[0] == 0


def test_the_trainers_counts_leave_out_rejected_and_all_bad_rankings(db):
    """The Chromium walk: the Reward model screen said "Train on 12 rankings" when 2 of them were rejected."""
    first, second, third = add_items(db, 3)
    rank(db, "alice", first)
    rejected = rank(db, "alice", second)
    rank(db, "alice", third, flags=["all are bad"])
    assert review.training_counts(db) == {"rankings": 2, "comparisons": 12, "left_out": 1}
    review.reject(db, rejected, "rushed", by="rita")
    assert review.training_counts(db) == {"rankings": 1, "comparisons": 6, "left_out": 2}
    assert review.training_counts(db)["rankings"] == len(load_rankings(db))


def test_the_counts_of_some_prompt_sets_equal_a_recount_of_what_the_trainers_load_from_them(db):
    """The DPO screen counts the sets picked through indexes alone (skips, rejections and all-bad flags subtracted)."""
    mine, other = add_items(db, 4, prompt_set="mine"), add_items(db, 3, prompt_set="other")
    for who in ("alice", "bob"):
        for item in mine + other:
            rank(db, who, item)
    review.reject(db, rank(db, "carol", mine[0]), "rushed", by="rita")
    rank(db, "carol", mine[1], flags=["all are bad"])
    rank(db, "carol", mine[2], flags=["prompt unclear"])  # flagged, but not left out
    annotation.skip_item(db, mine[3], annotation.annotator_id(db, "carol"), [0, 1, 2, 3], 1.0)
    for sets in (["mine"], ["other"], ["mine", "other"]):
        counts = review.training_counts(db, sets)
        assert counts["rankings"] == len(load_rankings(db, sets)), sets
        assert counts["left_out"] == (2 if "mine" in sets else 0)
        assert review.training_prompts(db, sets) == len({r.prompt_id for r in load_rankings(db, sets)})
    assert review.training_counts(db, ["mine", "other"])["rankings"] == review.training_counts(db)["rankings"] == 15
    for sets, people in ((None, ["carol"]), (["mine"], ["carol"]), (["other"], ["carol"]), (["mine"], ["alice", "carol"])):
        counts = review.training_counts(db, sets, people)  # the reward screen's annotators picked, with or without sets
        assert counts["rankings"] == len(load_rankings(db, sets, people)), (sets, people)
        assert counts["left_out"] == (2 if "carol" in people and sets != ["other"] else 0)
        assert review.training_prompts(db, sets, annotators=people) == len({r.prompt_id for r in load_rankings(db, sets, people)})
    assert review.training_prompts(db, ["mine", "other"], at_most=3) == 3  # counting stops there


def test_the_all_tied_count_is_what_dpo_leaves_out(db):
    """DPO's screen said 15 rankings where the job trained on 14: one tied every answer (walk, 2026-12-07)."""
    from data.rankings import ranking_to_pairs

    mine, other = add_items(db, 4, prompt_set="mine"), add_items(db, 2, prompt_set="other")
    tie = lambda who, item, **kw: annotation.submit_ranking(  # noqa: E731
        db, item, annotation.annotator_id(db, who), [[0, 1, 2, 3]], [0, 1, 2, 3], **kw).ranking_id
    for item in mine + other:
        rank(db, "alice", item)
    tie("bob", mine[0]), tie("bob", mine[1]), tie("bob", other[0])
    review.reject(db, tie("carol", mine[2]), "rushed", by="rita")  # left out already: not counted twice
    tie("carol", mine[3], flags=["all are bad"])
    annotation.skip_item(db, other[1], annotation.annotator_id(db, "bob"), [0, 1, 2, 3], 1.0)
    for sets in (None, ["mine"], ["other"]):
        loaded = load_rankings(db, sets)
        assert review.all_tied(db, sets) == sum(not ranking_to_pairs(e.groups) for e in loaded) == (1 if sets == ["other"] else 2 if sets else 3)
        assert review.training_prompts(db, sets, with_pairs=True) == len({e.prompt_id for e in loaded if ranking_to_pairs(e.groups)})


def test_an_item_whose_only_ranking_was_rejected_is_not_listed_as_ranked(db):
    """The Chromium walk: Item consensus opened on an item whose one ranking was rejected ("no rankings to build…")."""
    from data import items

    first, second = add_items(db, 2)
    rank(db, "alice", first)
    review.reject(db, rank(db, "alice", second), "rushed", by="rita")
    assert [(row["id"], row["n_rankings"]) for row in items.ranked_items(db)] == [(first, 1)]
