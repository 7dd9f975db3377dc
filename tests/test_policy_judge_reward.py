"""An AI judge as the reward of a policy update (issue 25, item 7): each prompt's answers ranked together several times,
letters shuffled, an answer's reward its share of the others it beat; evaluated new-against-old in one ranking."""

import http.server
import json
import re
import threading

import pytest

from data import generators, items, jobs, spot_checks, versions
from policy.config import JUDGED_K, JudgeConfig, PolicyConfig
from policy.judge import Judge, JudgeReward, vote_order, vote_scores
from policy.models import load_generator
from policy.train import fit, run_job
from tests.test_policy_remote import FakeServer, completion_json, remote
from tests.test_policy_train import PROMPTS, config

ANSWER = re.compile(r"Answer ([A-I]):\n(.*?)(?=\n\nAnswer [A-I]:\n|\Z)", re.DOTALL)


class ShorterJudge(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible judge that reads the lettered answers of each request and ranks the shorter ones first
    (equal lengths tied), after a line of critique: a scripted preference, asked through the judge's own prompt."""

    def __init__(self):
        self.requests, self.lock = 0, threading.Lock()
        super().__init__(("127.0.0.1", 0), RankShorterFirst)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class RankShorterFirst(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        chat = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        answers = ANSWER.findall(chat["messages"][-1]["content"])
        by_length = {}
        for letter, text in answers:
            by_length.setdefault(len(text), []).append(letter)
        ranking = " > ".join(" = ".join(letters) for _, letters in sorted(by_length.items()))
        with self.server.lock:
            self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(completion_json(f"The shorter, the better.\nRanking: {ranking}").encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def shorter_judge(db):
    server = ShorterJudge()
    generators.save_remote_generator(db, remote(server.url, name="shorter", concurrency=4, max_tokens=64), None)
    db.conn.commit()
    yield server
    server.shutdown()


def judge_reward(db, name: str, votes: int, group: int) -> JudgeReward:
    judge = Judge(db, JudgeConfig(remote=name, votes=votes), print)
    return JudgeReward(judge, votes, "Prefer short answers.", group, seed=0)


def test_vote_scores_count_answers_beaten_with_ties_as_half_and_ignore_unreadable_votes():
    assert vote_scores([[[2], [0, 1], [3]]], 4) == [1 / 2, 1 / 2, 1.0, 0.0]
    assert vote_scores([[[0], [1]], [[0], [1]], [[1], [0]]], 2) == [2 / 3, 1 / 3]
    assert vote_scores([None, None], 3) == [0.5, 0.5, 0.5]  # no signal: every answer alike, a zero advantage


def test_a_judge_rewards_each_answer_by_the_others_it_beat_whatever_letter_it_had(db, shorter_judge):
    reward = judge_reward(db, "shorter", votes=3, group=3)
    texts = ["a long answer", "short", "a medium one", "tie", "tie", "longest of all"]
    scores = reward.score(["p"] * 3 + ["q"] * 3, texts)
    assert scores.tolist() == [0.0, 1.0, 0.5, 0.75, 0.75, 0.0]  # per group of 3; the two "tie" answers tie
    assert shorter_judge.requests == 2 * 3 and reward.last_readable_share == 1.0
    # the answers stood under other letters in other votes (so a wrong mapping back would break the scores above)
    assert any(vote_order(start, vote, 3, "0:1") != [0, 1, 2] for start in (0, 3) for vote in range(3))


def test_a_judge_that_writes_no_ranking_gives_every_answer_the_same_reward(db):
    server = FakeServer(lambda n: (200, completion_json("They are all fine.")))
    generators.save_remote_generator(db, remote(server.url, name="vague"), None)
    reward = judge_reward(db, "vague", votes=2, group=2)
    assert reward.score(["p", "p"], ["x", "yy"]).tolist() == [0.5, 0.5]
    assert reward.last_readable_share == 0.0 and (reward.readable, reward.asked) == (0, 2)
    server.shutdown()


def test_a_judged_policy_update_needs_k_its_evaluation_can_letter():
    with pytest.raises(ValueError, match=f"use k <= {JUDGED_K}"):
        PolicyConfig(judge_remote="j", k=JUDGED_K + 1)
    assert not PolicyConfig(k=16).judged and PolicyConfig(judge_version=3).judged


@pytest.mark.slow
def test_a_judge_that_prefers_short_answers_makes_the_policy_shorter(db, shorter_judge, tiny_small_vocab_generator):
    """The scripted preference of tests/test_policy_train.py, now through the judge's prompt, letters and votes."""
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    reward = judge_reward(db, "shorter", votes=1, group=4)
    trainer, metrics = fit(model, tokenizer, reward, PROMPTS[:4], PROMPTS[4:],
                           config(algorithm="rloo", steps=25, prompts_per_step=2, learning_rate=3e-3, kl_coef=0.01))
    assert metrics["val/length_after"] < metrics["val/length_before"]
    assert metrics["val/win_rate"] >= 0.6  # the judge's own verdict, new and old answers ranked together


@pytest.mark.slow
def test_a_policy_update_rewarded_by_a_judge_needs_no_reward_model_and_says_who_rewarded_it(db, db_path, shorter_judge,
                                                                                          tiny_small_vocab_generator):
    start, job_id, done = judged_job(db, db_path, tiny_small_vocab_generator)
    new = versions.get_version(db, done["result"]["version"])
    assert new["parent_id"] == start and new["config"]["judge_remote"] == "shorter" and new["config"]["reward_version"] is None
    assert 0 <= new["metrics"]["val/win_rate"] <= 1 and new["metrics"]["val/win_pairs"] == 2 * 2
    assert [m["reward/judge_readable"] for m in jobs.job_metrics(db, job_id)] == [1.0, 1.0]
    # 2 steps x 2 prompts x 2 votes, then 2 held-out prompts x 2 votes of their 4 new and old answers together
    assert shorter_judge.requests == 2 * 2 * 2 + 2 * 2
    log = done["log"]
    assert "against the judge remote:shorter (2 votes)" in log and "the judge's votes: 12 of 12 readable" in log
    if check := spot_checks.verdict(db, new["id"]):  # the judge's favourites went to people, named as the judge's
        assert check["by"] == "the judge" and "of the judge's favourite pairs" in check["sentence"]
        assert "people first rank the judge's" in log


@pytest.mark.slow
def test_checkpoints_every_n_steps_are_evaluated_logged_and_their_favourites_queued_marked_with_their_step(
        db, db_path, shorter_judge, tiny_small_vocab_generator):
    start, job_id, done = judged_job(db, db_path, tiny_small_vocab_generator, spot_check_every=1)
    # as above, and the policy of step 1 evaluated too: 2 held-out prompts x 2 votes more
    assert shorter_judge.requests == 2 * 2 * 2 + 2 * 2 + 2 * 2
    assert re.search(r"checkpoint at step 1: KL -?\d\.\d{3}, win rate \d\.\d\d", done["log"])
    new = versions.get_version(db, done["result"]["version"])
    assert [sorted(c) for c in new["metrics"]["checkpoints"]] == [["step", "val/kl", "val/win_rate"]] * 2
    assert [c["step"] for c in new["metrics"]["checkpoints"]] == [1, 2]
    assert new["metrics"]["checkpoints"][-1]["val/kl"] == new["metrics"]["val/kl"]
    rows = spot_checks.checkpoint_agreement(db, new["id"])
    assert {row["step"] for row in rows} <= {1, 2} and all(row["rankings"] == 0 for row in rows)  # none unmarked


def judged_job(db, db_path, generator_path, **overrides):
    """A policy update of the tiny generator on 8 prompts, rewarded by the `shorter` judge, with no reward model:
    (the starting version's id, the job's id, the finished job)."""
    items.ensure_prompt_set(db, "s")
    for p in PROMPTS:
        items.add_prompt(db, "s", p)
    start = versions.register_version(db, "generator", "tiny", generator_path, activate=True)
    db.conn.commit()  # no reward model at all
    job_id = jobs.create_job(db, "train_policy", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_job(db, config(prompt_set="s", judge_remote="shorter", judge_votes=2, k=2, name="judged",
                                         activate=True, **overrides), job))
    done = jobs.get_job(db, job_id)
    assert done["status"] == "done", done["error"]
    return start, job_id, done
