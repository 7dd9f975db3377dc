"""The 'uncertain' queue order: least certain items first, a random share, scored by the active reward model."""

import random
import statistics

import pytest
import torch

from data import annotation, gold, items, jobs, queue, uncertainty, versions
from rm.config import RewardConfig, UncertaintyConfig
from rm.score import RewardScorer
from rm.train import run_job as run_reward_training
from rm.uncertainty import ranking_uncertainty, refresh_queue, run_uncertainty
from tests.conftest import add_items, rank_by

UNSURE = [0.1, 0.9, 0.5, 0.7, 0.3, 0.2]  # the uncertainty stored for items 0..5


@pytest.fixture
def queued(db):
    """Six items of set 'test', no repeats, scored by a (registered) reward model version."""
    item_ids = add_items(db, len(UNSURE))
    annotation.set_repeat_settings(db, "test", share=0.0, gap=1)
    version = versions.register_version(db, "reward", "rm-a", "/nowhere", activate=True)
    uncertainty.store_uncertainty(db, version, list(zip(item_ids, UNSURE)))
    return item_ids, version


def served_order(db, annotator: str, n: int) -> list[int]:
    me = annotation.annotator_id(db, annotator)
    served = []
    for _ in range(n):
        item = queue.next_item(db, me)
        served.append(item.id)
        annotation.submit_ranking(db, item.id, me, [[0], [1], [2, 3]], [0, 1, 2, 3])
    return served


def test_the_default_order_ignores_uncertainty(db, queued):
    item_ids, _ = queued
    assert served_order(db, "ann", 6) == item_ids


def test_the_uncertain_order_serves_the_least_certain_first(db, queued):
    item_ids, _ = queued
    uncertainty.set_queue_order(db, "test", "uncertain", random_share=0.0)
    by_doubt = [i for _, i in sorted(zip(UNSURE, item_ids), reverse=True)]
    assert served_order(db, "ann", 6) == by_doubt
    uncertainty.set_queue_order(db, "test", "oldest")
    assert db.execute("SELECT MAX(priority) FROM items").fetchone()[0] == 0  # back to oldest first


def test_fewer_rankings_still_come_first(db, queued):
    item_ids, _ = queued
    items.set_rankings_wanted(db, "test", 2)
    uncertainty.set_queue_order(db, "test", "uncertain", random_share=0.0)
    rank_by(db, [item_ids[1]], len, annotator="bob")  # the least certain item has a ranking already
    assert served_order(db, "ann", 5)[0] == item_ids[3]  # the next least certain of those with none
    assert served_order(db, "cy", 6)[0] == item_ids[1]  # all have one ranking now: the least certain first again


def test_new_scores_change_the_queue_at_once_and_unscored_items_come_last(db, queued):
    item_ids, version = queued
    uncertainty.set_queue_order(db, "test", "uncertain", random_share=0.0)
    uncertainty.store_uncertainty(db, version, [(item_ids[5], 0.95)])
    new_item = add_items(db, 1)[0]  # not scored: priority 0
    served = served_order(db, "ann", 7)
    assert served[0] == item_ids[5] and served[-1] == new_item


def test_the_random_share_is_a_uniform_sample_served_among_the_least_certain(db):
    """The reviewer's case: N=1 and a queue that drains. The items of the random share are fixed in advance by their
    draw, so those ranked are a uniform sample of the set whatever the reward model thought of them."""
    item_ids = add_items(db, 600)
    seeded = random.Random(2026)  # SQLite's random() drew these; seeded so the sample means below are not a coin toss
    db.conn.executemany("UPDATE items SET draw = ? WHERE id = ?", [(seeded.random(), i) for i in item_ids])
    db.conn.commit()
    annotation.set_repeat_settings(db, "test", share=0.0, gap=1)
    version = versions.register_version(db, "reward", "rm-a", "/nowhere", activate=True)
    doubt = {i: random.Random(i).random() for i in item_ids}
    uncertainty.store_uncertainty(db, version, list(doubt.items()))
    uncertainty.set_queue_order(db, "test", "uncertain", random_share=0.2)
    in_share = {i for i, draw in db.execute("SELECT id, draw FROM items") if draw < 0.2}
    assert 0.15 < len(in_share) / len(item_ids) < 0.25
    served = served_order(db, "ann", 200)  # the first third of the queue
    sampled = [doubt[i] for i in served if i in in_share]
    chosen = [doubt[i] for i in served if i not in in_share]
    everyone = statistics.mean(doubt.values())
    assert 0.1 < len(sampled) / len(served) < 0.35
    assert abs(statistics.mean(sampled) - everyone) < 0.1  # the random share: like the whole set
    assert statistics.mean(chosen) > everyone + 0.25  # the rest: the least certain
    draws = dict(db.execute("SELECT id, draw FROM items").fetchall())
    assert [draws[i] for i in served if i in in_share] == sorted((draws[i] for i in served if i in in_share), reverse=True)


def test_with_a_share_of_one_the_set_is_served_in_the_order_of_its_draws_and_by_rankings_first(db, queued):
    item_ids, _ = queued
    items.set_rankings_wanted(db, "test", 2)
    uncertainty.set_queue_order(db, "test", "uncertain", random_share=1.0)
    rank_by(db, [item_ids[0]], len, annotator="bob")
    draws = dict(db.execute("SELECT id, draw FROM items").fetchall())
    by_draw = sorted(item_ids[1:], key=draws.get, reverse=True)
    assert served_order(db, "ann", 6) == by_draw + [item_ids[0]]


def test_only_the_active_reward_models_scores_are_stored(db, queued):
    item_ids, version = queued
    versions.register_version(db, "reward", "rm-b", "/nowhere", activate=True)
    assert uncertainty.store_uncertainty(db, version, [(item_ids[0], 0.99)]) == 0
    assert db.execute("SELECT uncertainty FROM items WHERE id = ?", [item_ids[0]]).fetchone()[0] == UNSURE[0]


def test_a_store_from_before_the_queue_order_gets_draws_and_keeps_its_order(tmp_path):
    from sqlite_utils import Database

    from data.migrations import migrations

    old = Database(tmp_path / "old.db")
    migrations.apply(old, stop_before="m0017_uncertain_queue")
    old.execute("INSERT INTO prompt_sets (name, created_at) VALUES ('s', 'now')")
    old.execute("INSERT INTO prompts (id, prompt_set, text, created_at) VALUES (1, 's', 'p', 'now')")
    old.conn.executemany("INSERT INTO items (id, prompt_id, created_at) VALUES (?, 1, 'now')", [(i,) for i in range(1, 51)])
    old.conn.commit()
    migrations.apply(old)
    draws = [row[0] for row in old.execute("SELECT draw FROM items")]
    assert all(0 < d < 1 for d in draws) and len(set(draws)) == 50
    assert old.execute("SELECT MAX(items.priority), MIN(queue_order) FROM items, prompt_sets").fetchone() == (0, "oldest")
    old.execute("INSERT INTO items (id, prompt_id, created_at) VALUES (51, 1, 'now')")  # any insert gets a draw
    assert 0 < old.execute("SELECT draw FROM items WHERE id = 51").fetchone()[0] < 1


def test_items_to_score_are_the_open_items_of_uncertain_sets_not_yet_scored(db, queued):
    item_ids, version = queued
    assert uncertainty.items_to_score(db, version) == []  # no set in the 'uncertain' order
    uncertainty.set_queue_order(db, "test", "uncertain")
    assert uncertainty.items_to_score(db, version) == []  # all scored by this version
    other_version = versions.register_version(db, "reward", "rm-b", "/nowhere")
    rank_by(db, item_ids[:1], len)  # ranked: no longer open
    gold.set_gold(db, item_ids[1], [[0], [1], [2], [3]])  # gold: never in the queue
    add_items(db, 2, prompt_set="other")  # a set in the default order
    assert uncertainty.items_to_score(db, other_version) == item_ids[2:]
    assert uncertainty.items_to_score(db, version, rescore=True) == item_ids[2:]
    assert uncertainty.items_to_score(db, other_version, prompt_sets=["other"]) == [7, 8]


def test_the_overview_counts_open_and_scored_items_per_set(db, queued):
    item_ids, version = queued
    add_items(db, 3, prompt_set="other")
    uncertainty.set_queue_order(db, "test", "uncertain", random_share=0.25)
    rank_by(db, item_ids[:2], len)
    overview = uncertainty.queue_overview(db, version)
    assert overview["test"] == {"queue_order": "uncertain", "random_share": 0.25, "open": 4, "scored": 4}
    assert overview["other"] == {"queue_order": "oldest", "random_share": 0.2, "open": 3, "scored": 0}
    assert uncertainty.queue_overview(db, None)["other"]["scored"] == 0  # no active reward model: none scored


def test_settings_are_checked(db, queued):
    with pytest.raises(ValueError, match="unknown queue order"):
        uncertainty.set_queue_order(db, "test", "hardest")
    with pytest.raises(ValueError, match="random share"):
        uncertainty.set_queue_order(db, "test", "uncertain", random_share=1.5)
    with pytest.raises(ValueError, match="no prompt set"):
        uncertainty.set_queue_order(db, "nope", "uncertain")


def test_uncertainty_is_one_for_ties_and_falls_with_the_reward_gap():
    assert ranking_uncertainty(torch.zeros(4)) == 1.0
    gaps = [ranking_uncertainty(torch.tensor([g, 0.0])) for g in (0.1, 1.0, 3.0)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.1
    assert ranking_uncertainty(torch.tensor([3.0, 0.0])) == ranking_uncertainty(torch.tensor([0.0, 3.0]))


def trained_reward_model(db, db_path, tiny_encoder, name="rm-tiny"):
    """A tiny reward model trained (as the job does) on 30 rankings of set 's': 'good'/'great' answers win."""
    items.ensure_prompt_set(db, "s")
    ids = []
    for i in range(30):
        prompt_id, _ = items.add_prompt(db, "s", f"question number {i}")
        ids.append(items.add_item(db, prompt_id, [items.NewCompletion(t) for t in ("good answer", "bad answer", "great answer", "poor answer")]))
    db.conn.commit()
    rank_by(db, ids, lambda text: text.split()[0] in ("good", "great"))
    job_id = jobs.create_job(db, "train_rm", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_reward_training(db, RewardConfig(backbone=tiny_encoder, epochs=3, learning_rate=3e-3, bf16=False,
                                                           name=name, activate=True), job))
    return versions.version_named(db, "reward", name)


def open_pairs(db, prompt_set: str) -> list[int]:
    """Items of a set whose completions a trained model is sure about (good vs bad) or not (good vs great)."""
    items.ensure_prompt_set(db, prompt_set)
    ids = []
    for i, texts in enumerate([("good answer", "bad answer"), ("good answer", "great answer"), ("poor answer", "great answer")]):
        prompt_id, _ = items.add_prompt(db, prompt_set, f"new question {i}")
        ids.append(items.add_item(db, prompt_id, [items.NewCompletion(t) for t in texts]))
    db.conn.commit()
    return ids


@pytest.mark.slow
def test_the_job_scores_the_open_items_and_the_queue_serves_the_doubtful_first(db, db_path, tiny_encoder):
    version = trained_reward_model(db, db_path, tiny_encoder)
    sure, unsure, sure_too = open_pairs(db, "fresh")
    uncertainty.set_queue_order(db, "fresh", "uncertain", random_share=0.0)
    annotation.set_repeat_settings(db, "fresh", share=0.0, gap=1)
    job_id = jobs.create_job(db, "score_queue", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_uncertainty(db, UncertaintyConfig(), job))
    assert jobs.get_job(db, job_id)["result"] == {"reward_version": version["id"], "items": 3}
    stored = dict(db.execute("SELECT id, uncertainty FROM items WHERE id IN (?, ?, ?)", [sure, unsure, sure_too]).fetchall())
    assert stored[unsure] > max(stored[sure], stored[sure_too])
    assert queue.next_item(db, annotation.annotator_id(db, "ann")).id == unsure


@pytest.fixture
def started(monkeypatch, db_path):
    """The scoring jobs started in the background, created but not spawned (the spawn is covered in test_data_jobs)."""
    calls = []

    def create(path, kind, args):
        calls.append((kind, args))
        from data.store import open_db
        return jobs.create_job(open_db(path), kind, args)

    monkeypatch.setattr(jobs, "start_job", create)
    return calls


@pytest.mark.slow
def test_training_an_active_reward_model_starts_the_queue_scoring(db, db_path, tiny_encoder, started):
    trained_reward_model(db, db_path, tiny_encoder)
    assert started == []  # no set in the 'uncertain' order
    open_pairs(db, "fresh")
    uncertainty.set_queue_order(db, "fresh", "uncertain")
    trained_reward_model(db, db_path, tiny_encoder, name="rm-tiny-2")
    assert started == [("score_queue", {"prompt_sets": "fresh"})]


def test_a_new_scoring_job_supersedes_the_one_still_queued(db, started):
    add_items(db, 2)
    uncertainty.set_queue_order(db, "test", "uncertain")
    assert uncertainty.score_in_background(db) is None  # no active reward model
    versions.register_version(db, "reward", "rm-a", "/nowhere", activate=True)
    first, second = uncertainty.score_in_background(db), uncertainty.score_in_background(db)
    assert [jobs.get_job(db, j)["status"] for j in (first, second)] == ["cancelled", "queued"]


@pytest.mark.slow
def test_scoring_stops_when_another_reward_model_becomes_active(db, db_path, tiny_encoder):
    version = trained_reward_model(db, db_path, tiny_encoder)
    open_pairs(db, "fresh")
    uncertainty.set_queue_order(db, "fresh", "uncertain")
    versions.register_version(db, "reward", "rm-newer", "/nowhere", activate=True)
    lines = []
    scored = refresh_queue(db, RewardScorer(version["path"], "cpu"), version["id"], lines.append)
    assert scored == 0 and "another reward model is active" in lines[-1]
    assert db.execute("SELECT COUNT(*) FROM items WHERE uncertainty IS NOT NULL").fetchone()[0] == 0


def test_the_command_line_sets_the_order(db, db_path, queued, capsys):
    from data.__main__ import main

    assert main(["--db", str(db_path), "queue-order", "test", "uncertain", "--random-share", "0.1"]) == 0
    assert uncertainty.queue_settings(db, "test") == {"queue_order": "uncertain", "random_share": 0.1}
    assert '"scoring_job": null' in capsys.readouterr().out  # every item already scored by the active model
    assert main(["--db", str(db_path), "queue-order", "nope", "uncertain"]) == 2
    assert "no prompt set named 'nope'" in capsys.readouterr().err
