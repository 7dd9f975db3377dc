"""Data-parallel training under `accelerate launch --cpu --num_processes 2` (gloo): the same data, the same held-out
result as one process within noise, exactly one version written, progress reported once."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data import demonstrations, items, jobs, versions
from data.store import open_db

pytestmark = pytest.mark.slow  # two processes under accelerate launch, against one
ROOT = Path(__file__).resolve().parent.parent
DEMOS = [(f"question {i}: what is {w}", f"{w} is a word.") for i, w in enumerate(
    ["rain", "snow", "sun", "wind", "a cat", "a dog", "a tree", "the sea", "a hill", "a road", "a boat", "a star",
     "a cloud", "a stone", "a leaf", "a bird", "a lake", "a door", "a bell", "a lamp"])]  # 16 to train on, 4 held out


def run_module(module: str, processes: int, args: list[str]) -> subprocess.CompletedProcess:
    """`python -m module args`, alone or as `processes` processes under accelerate (gloo on CPU)."""
    launcher = [sys.executable, "-m"] if processes == 1 else [*jobs.accelerate_launch(processes), "-m"]  # the shipped config
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([*launcher, module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def printed(stdout: str, marker: str):
    """The JSON a process printed after `marker`: the processes share one pipe, so another's line can follow it on the
    same line (a full run, 2026-12-07: 'DIFFERENCES {...}LOCKSTEP 1 {...}'); the first JSON value is read, the rest left."""
    return json.JSONDecoder().raw_decode(stdout.split(marker, 1)[1])[0]


def run_trainer(module: str, db_path: Path, processes: int, args: list[str]) -> subprocess.CompletedProcess:
    """The trainer's command line, alone or as `processes` processes under accelerate."""
    return run_module(module, processes, ["--db", str(db_path), *args])


def store_with_demonstrations(path: Path, tiny_generator: str) -> None:
    db = open_db(path)
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    demonstrations.import_demonstrations(db, [demonstrations.Demonstration(p, r) for p, r in DEMOS], "s")
    db.close()


def test_sft_on_two_processes_matches_one_and_writes_one_version(tmp_path, tiny_generator):
    args = ["--epochs", "3", "--learning-rate", "2e-3", "--bf16", "false", "--lora", "false", "--validation-fraction", "0.2"]
    results = {}
    for processes in (1, 2):
        path = tmp_path / f"{processes}.db"
        store_with_demonstrations(path, tiny_generator)
        batch = ["--batch-size", str(8 // processes)]  # the same 8 demonstrations per step in both runs
        done = run_trainer("policy.sft", path, processes, [*args, *batch, "--name", f"sft-{processes}"])
        db = open_db(path)
        [job] = jobs.list_jobs(db)
        assert job["status"] == "done" and done.stdout.count(f"job {job['id']} done") == 1  # one process reports
        made = [v for v in versions.list_versions(db, "generator") if v["name"].startswith("sft-")]
        assert [v["name"] for v in made] == [f"sft-{processes}"]  # exactly one version, from the first process
        steps = [m["step"] for m in jobs.job_metrics(db, job["id"]) if "train/loss" in m]
        assert steps == sorted(set(steps))  # each step reported once
        results[processes] = job["result"], made[0]["metrics"]
    (one, one_metrics), (two, two_metrics) = results[1], results[2]
    assert two_metrics["steps"] == one_metrics["steps"]  # half the batch per process: the same number of steps
    assert two_metrics["val/loss"] < two_metrics["val/loss_before"]  # it learnt
    assert two["val/loss"] == pytest.approx(one["val/loss"], rel=0.1)  # as far as one process does


def test_reward_model_on_two_processes_matches_one_and_writes_one_version(tmp_path, tiny_encoder):
    from tests.test_rm_train import scripted_db

    accuracy = {}
    for processes in (1, 2):
        path = tmp_path / f"rm-{processes}.db"
        db = open_db(path)
        scripted_db(db, n_prompts=64)
        db.close()
        done = run_trainer("rm.train", path, processes, [
            "--backbone", tiny_encoder, "--epochs", "3", "--learning-rate", "3e-3", "--bf16", "false",
            "--batch-size", str(16 // processes), "--name", f"rm-{processes}"])
        db = open_db(path)
        [job] = jobs.list_jobs(db)
        assert job["status"] == "done" and done.stdout.count(f"job {job['id']} done") == 1
        [version] = versions.list_versions(db, "reward")
        assert version["name"] == f"rm-{processes}"
        accuracy[processes] = version["metrics"]["val/accuracy"]
        steps = [m["step"] for m in jobs.job_metrics(db, job["id"])]
        assert steps == sorted(set(steps)) and len(steps) == version["metrics"]["steps"]
    assert accuracy[2] > 0.9 and abs(accuracy[2] - accuracy[1]) <= 0.1


@pytest.mark.parametrize("strategy", ["replicate", "shard"])
def test_an_sft_and_a_reward_model_step_on_two_processes_make_the_update_of_one_process_on_both_batches(
        tiny_generator, tiny_encoder, strategy):
    """Each process steps on its batch; the gradients averaged over the processes (sharded: by FSDP's reduce-scatter,
    the SFT loss through the model's own forward) give one process's step on the mean of both batches' losses."""
    done = run_module("tests.parallel_sft_rm_step", 2, [tiny_generator, tiny_encoder, strategy])
    differences = printed(done.stdout, "DIFFERENCES ")
    for trainer in ("sft", "reward"):
        assert differences[f"{trainer}/moved"] > 1e-4, trainer  # the step moved the weights
        assert differences[trainer] < 1e-5, (trainer, differences)


@pytest.mark.parametrize("strategy", ["replicate", "shard"])
def test_a_policy_update_step_on_two_processes_makes_the_update_of_one_process_on_the_whole_batch(
        tiny_small_vocab_generator, strategy):
    """Each process updates on half of a step's prompts; the averaged gradients and the statistics over the whole batch
    (standardised rewards, REINFORCE's baseline, PPO's whitening and token count) give one process's update. Sharded,
    the policy and its reference are split across the processes, which sample in lockstep and compute log-probs
    through the model's own forward: the same update, gathered whole."""
    done = run_module("tests.parallel_policy_step", 2, [tiny_small_vocab_generator, strategy])
    differences = printed(done.stdout, "DIFFERENCES ")
    for algorithm in ("rloo", "reinforce", "grpo", "dr_grpo", "ppo"):
        assert differences[f"{algorithm}/moved"] > 1e-4, algorithm  # the step moved the weights
        assert differences[algorithm] < 1e-5, (algorithm, differences)
    if strategy == "shard":  # the first process's rows end at once, the second's never: both decode all 6 tokens
        first, second = (json.loads(re.search(rf"LOCKSTEP {rank} (\{{[^}}]*\}})", done.stdout).group(1)) for rank in (0, 1))
        assert first == {"steps": 5, "padding_after_first": True, "sum": 3.0}
        assert second == {"steps": 5, "padding_after_first": False, "sum": 3.0}


def policy_store(tmp_path, generator: str, encoder: str):
    """A store with a prompt set "s", an active tiny generator and an active reward model on a tiny encoder."""
    from tests.test_policy_train import PROMPTS, saved_reward_model

    path = tmp_path / "policy.db"
    db = open_db(path)
    items.ensure_prompt_set(db, "s")
    for prompt in PROMPTS:
        items.add_prompt(db, "s", prompt)
    versions.register_version(db, "generator", "tiny", generator, activate=True)
    versions.register_version(db, "reward", "rm", saved_reward_model(encoder, tmp_path / "rm"), activate=True)
    db.close()
    return path


def test_a_policy_update_on_two_processes_writes_one_version_and_reports_each_step_once(tmp_path, tiny_small_vocab_generator,
                                                                                        tiny_encoder):
    path = policy_store(tmp_path, tiny_small_vocab_generator, tiny_encoder)
    done = run_trainer("policy.train", path, 2, ["--prompt-set", "s", "--steps", "2", "--k", "2", "--prompts-per-step", "2",
                                                 "--eval-prompts", "2", "--max-new-tokens", "8", "--lora", "true",
                                                 "--bf16", "false", "--name", "policy-2"])
    db = open_db(path)
    [job] = jobs.list_jobs(db)
    assert job["status"] == "done" and done.stdout.count(f"job {job['id']} done") == 1
    assert "2 processes, 1 prompts each a step" in job["log"]
    [made] = [v for v in versions.list_versions(db, "generator") if v["parent_id"] is not None]
    assert made["name"] == "policy-2" and {"val/kl", "val/win_rate"} <= set(made["metrics"])
    assert [m["step"] for m in jobs.job_metrics(db, job["id"])] == [1, 2]


def test_a_sharded_policy_update_on_two_processes_evaluates_on_both_and_saves_whole_weights_once(
        tmp_path, tiny_small_vocab_generator, tiny_encoder):
    """PPO with full weights and gradient checkpointing, sharded: the processes sample different prompts in lockstep
    (the lockstep itself: tests/parallel_policy_step.py), update with a whole value head beside the sharded policy,
    evaluate a checkpoint and the end together, and the first one saves the whole weights."""
    from policy.models import load_generator
    path = policy_store(tmp_path, tiny_small_vocab_generator, tiny_encoder)
    done = run_trainer("policy.train", path, 2, ["--prompt-set", "s", "--algorithm", "ppo", "--steps", "2", "--k", "2",
                                                 "--prompts-per-step", "2", "--eval-prompts", "2", "--max-new-tokens", "12",
                                                 "--lora", "false", "--strategy", "shard", "--spot-check-every", "1", "--gradient-checkpointing", "true",
                                                 "--learning-rate", "1e-3", "--bf16", "false", "--name", "sharded"])
    db = open_db(path)
    [job] = jobs.list_jobs(db)
    assert job["status"] == "done" and done.stdout.count(f"job {job['id']} done") == 1
    assert [m["step"] for m in jobs.job_metrics(db, job["id"])] == [1, 2]
    [made] = [v for v in versions.list_versions(db, "generator") if v["parent_id"] is not None]
    assert {"val/kl", "val/win_rate"} <= set(made["metrics"]) and [c["step"] for c in made["metrics"]["checkpoints"]] == [1, 2]
    assert made["config"]["strategy"] == "shard"
    saved, start = (dict(load_generator(p)[0].named_parameters()) for p in (made["path"], tiny_small_vocab_generator))
    assert saved.keys() == start.keys()  # whole weights, not a shard
    assert max((saved[name] - start[name]).abs().max().item() for name in saved) > 1e-4  # and trained


@pytest.mark.parametrize("strategy", ["replicate", "shard"])
def test_a_dpo_step_on_two_processes_makes_the_update_and_the_figures_of_one_process_on_the_whole_batch(tiny_generator,
                                                                                                      strategy):
    """Rankings of different weights split unevenly over two processes: the loss scaled by the whole batch's weight, the
    gradients averaged, and the held-out figures summed over both processes' rankings give one process's (sharded:
    the process with fewer rankings runs passes of weight 0 beside the other's)."""
    done = run_module("tests.parallel_dpo_step", 2, [tiny_generator, strategy])
    result = printed(done.stdout, "DPO ")
    assert result["moved"] > 1e-4 and result["difference"] < 1e-5, result
    for name, value in result["alone"].items():
        assert result["shared"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def store_with_rankings(path: Path, tiny_generator: str, reward_model: str) -> None:
    """10 prompts, each ranked once, and the tiny generator and a reward model active."""
    from data import annotation

    db = open_db(path)
    items.ensure_prompt_set(db, "s")
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    versions.register_version(db, "reward", "rm", reward_model, activate=True)
    alice = annotation.annotator_id(db, "alice")
    for i in range(10):
        prompt_id, _ = items.add_prompt(db, "s", f"prompt number {i}")
        item = items.add_item(db, prompt_id, [items.NewCompletion(t) for t in ("short", "a much longer answer", "mid one")])
        annotation.submit_ranking(db, item, alice, [[1], [2], [0]], [0, 1, 2])
    db.close()


@pytest.mark.parametrize("strategy", ["replicate", "shard"])
def test_dpo_on_two_processes_writes_one_version_and_reports_each_step_once(tmp_path, tiny_generator, tiny_encoder, strategy):
    """With people's spot check at each KL check: the first process evaluates with the reward model (sharded: both,
    together), and both take the same steps. 8 training rankings in steps of 3 leave a step of 2 rankings, one a
    process, and sharded, held-out rankings one process lacks a pass for."""
    from tests.test_policy_train import saved_reward_model

    path = tmp_path / "dpo.db"
    store_with_rankings(path, tiny_generator, saved_reward_model(tiny_encoder, tmp_path / "rm"))
    sharded = ["--lora", "false", "--strategy", "shard"] if strategy == "shard" else []
    done = run_trainer("policy.dpo", path, 2, ["--epochs", "2", "--rankings-per-step", "3", "--eval-samples", "2",
                                               "--max-new-tokens", "6", "--bf16", "false", "--name", "dpo-2",
                                               "--kl-budget", "0", "--kl-checks", "2", "--spot-check-checkpoints", "true",
                                               *sharded])
    db = open_db(path)
    [job] = jobs.list_jobs(db)
    assert job["status"] == "done" and done.stdout.count(f"job {job['id']} done") == 1 and "2 processes" in job["log"]
    [made] = [v for v in versions.list_versions(db, "generator") if v["parent_id"] is not None]
    assert made["name"] == "dpo-2" and made["metrics"]["train/rankings"] + made["metrics"]["val/rankings"] == 10
    steps = [m["step"] for m in jobs.job_metrics(db, job["id"]) if "train/loss" in m]
    assert steps == sorted(set(steps)) and len(steps) == made["metrics"]["steps"]
    assert [c["step"] for c in made["metrics"]["checkpoints"]] == [len(steps) // 2, len(steps)]
    assert made["config"]["strategy"] == strategy and {"val/kl", "val/win_rate"} <= set(made["metrics"])


def test_sharded_dpo_past_its_kl_budget_restores_the_shards_of_its_last_checkpoint_and_saves_them_whole(
        tmp_path, tiny_generator, tiny_encoder):
    """A budget the first check exceeds: every process puts back its shards of the start, and the saved weights are
    the start's."""
    from policy.models import load_generator
    from tests.test_policy_train import saved_reward_model

    path = tmp_path / "dpo.db"
    store_with_rankings(path, tiny_generator, saved_reward_model(tiny_encoder, tmp_path / "rm"))
    run_trainer("policy.dpo", path, 2, ["--epochs", "2", "--rankings-per-step", "2", "--eval-samples", "2",
                                        "--max-new-tokens", "6", "--bf16", "false", "--lora", "false", "--strategy", "shard",
                                        "--learning-rate", "1e-3", "--kl-budget", "1e-9", "--kl-checks", "2"])
    db = open_db(path)
    [job] = jobs.list_jobs(db)
    assert job["status"] == "done", job["log"]
    [made] = [v for v in versions.list_versions(db, "generator") if v["parent_id"] is not None]
    assert made["metrics"]["kl_budget/spent"] and made["metrics"]["kl_budget/kept_step"] == 0
    assert made["metrics"]["kl_budget/curve"][0][1] > 1e-9 and "val/kl" in made["metrics"]
    saved, start = (dict(load_generator(p)[0].named_parameters()) for p in (made["path"], tiny_generator))
    assert saved.keys() == start.keys() and max((saved[n] - start[n]).abs().max().item() for n in saved) < 1e-6


def wait_until_finished(db, job_id: int, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while (job := jobs.get_job(db, job_id))["status"] in jobs.UNFINISHED and time.time() < deadline:
        time.sleep(1)
    return job


def test_a_job_of_two_processes_started_as_the_admin_page_does_or_from_the_command_line_launches_them_itself(
        tmp_path, tiny_generator):
    path = tmp_path / "launch.db"
    store_with_demonstrations(path, tiny_generator)
    db = open_db(path)
    job_id = jobs.start_job(path, "sft", {"epochs": 1, "batch_size": 4, "lora": False, "bf16": "false", "processes": 2,
                                         "name": "sft-page"})
    job = wait_until_finished(db, job_id)
    assert job["status"] == "done", job["error"] or job["log"]
    assert "2 processes" in job["log"] and job["result"]["name"] == "sft-page"
    done = run_module("policy.sft", 1, ["--db", str(path), "--epochs", "1", "--batch-size", "4", "--lora", "false",
                                        "--bf16", "false", "--processes", "2", "--name", "sft-cli"])
    [cli_job] = jobs.list_jobs(db, limit=1)
    assert cli_job["status"] == "done" and "2 processes" in cli_job["log"] and done.stdout.count(f"job {cli_job['id']} done") == 1
    assert sorted(v["name"] for v in versions.list_versions(db, "generator") if v["parent_id"]) == ["sft-cli", "sft-page"]


def test_sft_sharded_on_two_processes_matches_one_and_saves_whole_weights(tmp_path, tiny_generator):
    """FSDP2: each process holds half of every block's weights, gradients and optimizer state; the version it saves
    is the whole model (it loads and generates), and it learns as one process does."""
    from policy.models import load_generator

    args = ["--epochs", "3", "--learning-rate", "2e-3", "--bf16", "false", "--lora", "false", "--validation-fraction", "0.2"]
    losses = {}
    for processes, strategy in ((1, "replicate"), (2, "shard")):
        path = tmp_path / f"{strategy}.db"
        store_with_demonstrations(path, tiny_generator)
        run_trainer("policy.sft", path, processes, [*args, "--batch-size", str(8 // processes), "--strategy", strategy,
                                                    "--name", f"sft-{strategy}"])
        db = open_db(path)
        [job] = jobs.list_jobs(db)
        [made] = [v for v in versions.list_versions(db, "generator") if v["parent_id"]]
        assert job["status"] == "done" and made["name"] == f"sft-{strategy}"
        losses[strategy] = made["metrics"]["val/loss"], made["metrics"]["val/loss_before"]
        model, _ = load_generator(made["path"])  # whole weights: every tensor its full shape
        start, _ = load_generator(tiny_generator)
        assert all(a.shape == b.shape for a, b in zip(model.state_dict().values(), start.state_dict().values()))
        assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values()))
    assert losses["shard"][0] < losses["shard"][1]  # it learnt
    assert losses["shard"][0] == pytest.approx(losses["replicate"][0], rel=0.1)


def test_a_reward_model_sharded_on_two_processes_learns_as_one_process_does_and_saves_whole_weights(tmp_path, tiny_encoder):
    from rm.score import RewardScorer
    from tests.test_rm_train import scripted_db

    accuracy = {}
    for processes, strategy in ((1, "replicate"), (2, "shard")):
        path = tmp_path / f"rm-{strategy}.db"
        db = open_db(path)
        scripted_db(db, n_prompts=64)
        db.close()
        run_trainer("rm.train", path, processes, ["--backbone", tiny_encoder, "--epochs", "3", "--learning-rate", "3e-3",
                                                  "--bf16", "false", "--batch-size", str(16 // processes),
                                                  "--strategy", strategy, "--name", f"rm-{strategy}"])
        [version] = versions.list_versions(open_db(path), "reward")
        accuracy[strategy] = version["metrics"]["val/accuracy"]
        scores = RewardScorer(version["path"], "cpu").score(["question number 1"] * 4,
                                                              ["good answer", "great answer", "bad answer", "poor answer"])
        assert scores[:2].min() > scores[2:].max()  # the saved weights are the trained ones, whole
    assert accuracy["shard"] > 0.9 and abs(accuracy["shard"] - accuracy["replicate"]) <= 0.1


def test_gradients_are_averaged_in_buckets_of_one_dtype_and_at_most_the_bucket_size(monkeypatch):
    import training.parallel

    monkeypatch.setattr(training.parallel, "BUCKET_BYTES", 64)
    shapes = [(4, torch.float32), (8, torch.float32), (32, torch.float32), (2, torch.bfloat16), (2, torch.bfloat16),
              (4, torch.float32)]  # 16, 32, 128, 4, 4 and 16 bytes of gradients
    params = [torch.nn.Parameter(torch.zeros(n, dtype=dtype)) for n, dtype in shapes]
    for p in params:
        p.grad = torch.zeros_like(p)
    index = {id(p): i for i, p in enumerate(params)}
    buckets = training.parallel.gradient_buckets(params)
    assert [[index[id(p)] for p in bucket] for bucket in buckets] == [[0, 1], [2], [3, 4], [5]]
