"""An AI judge as a measured virtual annotator (issue 25, item 7): its votes are kept apart from people's rankings
and measured against them, from 1, 2, 4 and 8 votes."""

import json

import pytest

from data import annotation, export, generators, jobs, judgements, quality
from policy.config import JudgeConfig
from policy.judge import read_ranking, run_judge, vote_order
from tests.conftest import add_items
from tests.test_policy_remote import FakeServer, completion_json, remote
from training.rankings import load_rankings


def rank(db, who: str, item_id: int, groups) -> None:
    annotation.submit_ranking(db, item_id, annotation.annotator_id(db, who), groups, list(range(4)))


def test_a_judges_answer_is_read_from_its_last_ranking_line_in_its_own_letters():
    assert read_ranking("A is vague, B is right.\nRanking: **B > A = C", [2, 0, 1]) == [[0], [1, 2]]
    assert read_ranking("Ranking: A > B\nOn second thought...\nranking: C > B > A", [0, 1, 2]) == [[2], [1], [0]]
    assert read_ranking("I prefer B.", [0, 1]) is None  # no ranking line
    assert read_ranking("Ranking: A > B > Z", [0, 1]) is None  # no such letter
    assert read_ranking("Ranking: A > A", [0, 1]) is None  # a letter twice, another missing
    orders = [vote_order(7, n, 4, seed=0) for n in range(8)]
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len({tuple(o) for o in orders}) > 1
    assert orders == [vote_order(7, n, 4, seed=0) for n in range(8)]  # reproducible


def test_agreement_with_people_is_measured_per_number_of_votes(db):
    first, second = add_items(db, 2)
    for who in ("alice", "bob"):
        rank(db, who, first, [[0], [1], [2], [3]])
        rank(db, who, second, [[3], [2], [1], [0]])
    votes = {first: [[[0], [1], [2], [3]], [[3], [2], [1], [0]]],  # right, then reversed: two votes tie everything
             second: [[[3], [2], [1], [0]], [[3], [2], [0], [1]]]}  # right, then one pair swapped
    for item_id, groups in votes.items():
        judgements.store_votes(db, "remote:j", item_id, [(g, "…") for g in groups] + [(None, "no ranking")], 4)
    by_k = {row["votes"]: row for row in judgements.agreement_with_people(db, "remote:j")}
    assert (by_k[1]["agreement"], by_k[1]["pairs"], by_k[1]["items"]) == (1.0, 12, 2)
    # 2 votes: item 1 all tied (no strict pair); item 2 mean ranks D 0, C 1, A 2.5, B 2.5: 5 strict pairs, all agree
    assert (by_k[2]["agreement"], by_k[2]["pairs"]) == (1.0, 5)
    assert {**by_k[8], "votes": 2} == by_k[2]  # only 2 readable votes each
    assert judgements.judge_summary(db, "remote:j") == {"items": 2, "votes": 6, "readable_share": 4 / 6}
    # kept apart: the trainers, the exports and people's agreement never see a judge's vote
    assert len(load_rankings(db)) == 4 and export.count_rows(db, "rankings") == 4
    quality.refresh(db)
    assert {r["annotator"] for r in quality.annotator_table(db)} == {"alice", "bob"}


def test_a_judge_job_asks_each_vote_with_its_own_letters_and_stores_what_it_read(db, db_path):
    server = FakeServer(lambda n: (200, completion_json("A reads best; D is off topic.\nRanking: A > B > C = D")))
    generators.save_remote_generator(db, remote(server.url, name="judge-model"), None)
    item_ids = add_items(db, 4, prompt_set="s")
    for item_id in item_ids[:2]:
        rank(db, "alice", item_id, [[0], [1], [2], [3]])
    db.conn.commit()
    config = JudgeConfig(prompt_set="s", remote="judge-model", share=0.5, votes=3)
    job_id = jobs.create_job(db, "judge", {"prompt_set": "s", "remote": "judge-model"})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_judge(db, config, job))
    assert server.requests == 2 * 3 and result["judged_now"] == result["items"] == 2 and result["readable_share"] == 1.0
    judged = {row[0] for row in db.execute("SELECT DISTINCT item_id FROM judgements")}
    assert judged == set(item_ids[:2])  # half the set, those people ranked first
    for item_id, vote, groups in db.execute("SELECT item_id, vote, groups FROM judgements"):
        order = vote_order(item_id, vote, 4, seed=0)  # the letter A of this vote is the answer at order[0]
        assert json.loads(groups) == [[order[0]], [order[1]], sorted(order[2:])]
    assert [row["votes"] for row in result["agreement"]] == [1, 2, 4, 8] and result["agreement"][0]["items"] == 2
    assert jobs.get_job(db, job_id)["status"] == "done"
    with jobs.running_job(db_path, jobs.create_job(db, "judge", {})) as (job, again):
        again.update(run_judge(db, config, job))
    assert again["judged_now"] == 0 and again["items"] == 2 and server.requests == 6  # the share is judged already: nothing asked twice


def test_a_judge_is_a_light_job_when_remote_and_a_heavy_one_when_local():
    from data import scheduler

    assert not scheduler.is_heavy("judge", {"remote": "judge-model"}) and scheduler.is_heavy("judge", {"remote": ""})
    with pytest.raises(ValueError, match="votes must be between 1 and 16"):
        JudgeConfig(votes=0)


def test_the_agreement_screen_starts_a_judge_and_shows_its_agreement_by_votes(app_db, db_path, monkeypatch):
    from tests.test_pages import start, unescaped

    server = FakeServer(lambda n: (200, completion_json("Ranking: A > B > C > D")))
    generators.save_remote_generator(app_db, remote(server.url, name="judge-model"), None)
    item_ids = add_items(app_db, 2, prompt_set="s")
    for item_id in item_ids:
        rank(app_db, "alice", item_id, [[0], [1], [2], [3]])
    app_db.conn.commit()
    at = start("pages/quality/agreement.py")
    assert not at.exception and any("No judge has run yet" in c.value for c in at.caption)
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda path, kind, args, actor=None: started.append((kind, args)) or 9)
    at.selectbox(key="judge-set").set_value("s")
    at.button(key="FormSubmitter:judge-Start judging").click().run()
    assert started and started[0][0] == "judge" and started[0][1]["remote"] == "judge-model" and started[0][1]["prompt_set"] == "s"
    assert "AI judge queued" in unescaped(at.success[0])
    job_id = jobs.create_job(app_db, "judge", started[0][1])
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_judge(app_db, JudgeConfig(**started[0][1]), job))
    at = start("pages/quality/agreement.py")
    assert not at.exception
    shown = next(d.value for d in at.dataframe if "judge" in d.value.columns)
    assert shown.to_dict("records")[0] | {"job": 0} == {"judge": "remote:judge-model", "set": "s", "items judged": 1,
                                                        "votes stored": 8, "readable votes": 1.0, "job": 0}
    assert any(c.value.startswith("Agreement of the judge's voted ranking") for c in at.caption)


def test_a_local_generator_judges_too_and_an_unreadable_judge_is_called_so(db, db_path, tiny_generator):
    from data import versions

    version = versions.register_version(db, "generator", "tiny", tiny_generator)
    [item_id] = add_items(db, 1, prompt_set="s")
    rank(db, "alice", item_id, [[0], [1], [2], [3]])
    db.conn.commit()
    job_id = jobs.create_job(db, "judge", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_judge(db, JudgeConfig(prompt_set="s", generator_version=version, votes=2, max_new_tokens=4), job))
    assert result["judge"] == f"version:{version}" and result["votes"] == 2
    assert result["readable_share"] == 0.0  # a random tiny model writes no "Ranking:" line
    assert "no vote held a readable 'Ranking:' line" in jobs.get_job(db, job_id)["log"]
