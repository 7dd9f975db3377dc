"""Data-parallel training under `accelerate launch --cpu --num_processes 2` (gloo): the same data, the same held-out
result as one process within noise, exactly one version written, progress reported once."""

import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from data import demonstrations, items, jobs, versions
from data.store import open_db

# Two processes under accelerate launch, against one. Each launch costs ~8 s before a step (the CLI's and both
# workers' imports), so the module's fixtures launch once per strategy and run the one-process baselines once.
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
DEMOS = [(f"question {i}: what is {w}", f"{w} is a word.") for i, w in enumerate(
    ["rain", "snow", "sun", "wind", "a cat", "a dog", "a tree", "the sea", "a hill", "a road", "a boat", "a star",
     "a cloud", "a stone", "a leaf", "a bird", "a lake", "a door", "a bell", "a lamp"])]  # 16 to train on, 4 held out


def run_module(module: str, processes: int, args: list[str]) -> subprocess.CompletedProcess:
    """`python -m module args`, alone or as `processes` processes under accelerate (gloo on CPU)."""
    launcher = [sys.executable, "-m"] if processes == 1 else [*jobs.accelerate_launch(processes), "-m"]  # the shipped config
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    before = launch_folders()
    done = subprocess.run([*launcher, module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert launch_folders() <= before, "torch's launcher left its log folder behind"  # one a launch, with no log_dir
    return done


def launch_folders() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "torchelastic_*")))


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


SFT_SETTINGS = {"epochs": 3, "learning_rate": 2e-3, "bf16": "false", "lora": False, "validation_fraction": 0.2}
RM_SETTINGS = {"epochs": 3, "learning_rate": 3e-3, "bf16": "false"}


def as_flags(settings: dict) -> list[str]:
    return [word for key, value in settings.items()
            for word in (f"--{key.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value))]


def wait_until_finished(db, job_id: int, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while (job := jobs.get_job(db, job_id))["status"] in jobs.UNFINISHED and time.time() < deadline:
        time.sleep(1)
    return job


def made_by_the_one_job(path: Path, kind: str, name: str):
    """The store's one job, the versions called `name` and the metrics the job reported."""
    db = open_db(path)
    [job] = jobs.list_jobs(db)
    made = [v for v in versions.list_versions(db, kind) if v["name"] == name]
    return job, made, jobs.job_metrics(db, job["id"])


def sft_run(path: Path, generator: str, processes: int, strategy: str, started_from: str = "accelerate launch"):
    """SFT of `processes` processes started by `accelerate launch` of the command line (the README's line), the
    command line's `--processes` (it launches its processes itself) or a job queued as the admin page does: what its
    processes printed, then `made_by_the_one_job`."""
    store_with_demonstrations(path, generator)
    name = f"sft-{strategy}-{processes}"
    settings = {**SFT_SETTINGS, "batch_size": 8 // processes, "strategy": strategy, "processes": processes, "name": name}
    if started_from == "the admin page":
        job_id = jobs.start_job(path, "sft", settings)
        job = wait_until_finished(open_db(path), job_id)
        assert job["status"] == "done", job["error"] or job["log"]
        printed_out = jobs.job_log_path(path, job_id).read_text()
    else:
        launched = processes if started_from == "accelerate launch" else 1
        printed_out = run_trainer("policy.sft", path, launched, as_flags(settings)).stdout
    return printed_out, *made_by_the_one_job(path, "generator", name)


def rm_run(path: Path, encoder: str, processes: int, strategy: str):
    from tests.test_rm_train import scripted_db

    db = open_db(path)
    scripted_db(db, n_prompts=64)
    db.close()
    name = f"rm-{strategy}-{processes}"
    settings = {"backbone": encoder, **RM_SETTINGS, "batch_size": 16 // processes, "strategy": strategy, "name": name}
    return run_trainer("rm.train", path, processes, as_flags(settings)).stdout, *made_by_the_one_job(path, "reward", name)


@pytest.fixture(scope="module")
def sft_alone(tmp_path_factory, tiny_generator):
    """The metrics of the version one process makes (both strategies of two processes compare with it)."""
    _, _, [made], _ = sft_run(tmp_path_factory.mktemp("sft") / "alone.db", tiny_generator, 1, "replicate")
    return made["metrics"]


@pytest.fixture(scope="module")
def rm_alone(tmp_path_factory, tiny_encoder):
    _, _, [version], _ = rm_run(tmp_path_factory.mktemp("rm") / "alone.db", tiny_encoder, 1, "replicate")
    return version["metrics"]


@pytest.mark.parametrize("strategy, started_from", [("replicate", "accelerate launch"), ("shard", "the command line"),
                                                  ("replicate", "the admin page")])
def test_sft_on_two_processes_matches_one_and_writes_one_version_of_whole_weights(tmp_path, tiny_generator, sft_alone,
                                                                                  strategy, started_from):
    """Each process half of every step's demonstrations (sharded, FSDP2: each holds half of every block's weights,
    gradients and optimizer state): it learns as one process does, reports each step once, and the one version it
    saves is the whole model (it loads). Started by `accelerate launch`, or as one command or one queued job that
    launches its processes itself."""
    from policy.models import load_generator

    printed_out, job, made, metrics = sft_run(tmp_path / "two.db", tiny_generator, 2, strategy, started_from)
    assert job["status"] == "done" and printed_out.count(f"job {job['id']} done") == 1  # one process reports
    assert "2 processes" in job["log"] and job["args"]["processes"] == 2
    assert len(made) == 1  # exactly one version, from the first process
    steps = [m["step"] for m in metrics if "train/loss" in m]
    assert steps == sorted(set(steps))  # each step reported once
    two = made[0]["metrics"]
    assert two["steps"] == sft_alone["steps"]  # half the batch per process: the same number of steps
    assert two["val/loss"] < two["val/loss_before"]  # it learnt
    assert two["val/loss"] == pytest.approx(sft_alone["val/loss"], rel=0.1)  # as far as one process does
    model, start = (load_generator(path)[0].state_dict() for path in (made[0]["path"], tiny_generator))
    assert [a.shape for a in model.values()] == [b.shape for b in start.values()]  # whole weights, not a shard
    assert any(not torch.equal(a, b) for a, b in zip(model.values(), start.values()))


@pytest.mark.parametrize("strategy", ["replicate", "shard"])
def test_a_reward_model_on_two_processes_learns_as_one_does_and_writes_one_version_of_whole_weights(tmp_path, tiny_encoder,
                                                                                                  rm_alone, strategy):
    from rm.score import RewardScorer

    stdout, job, made, metrics = rm_run(tmp_path / "two.db", tiny_encoder, 2, strategy)
    assert job["status"] == "done" and stdout.count(f"job {job['id']} done") == 1 and len(made) == 1
    version, steps = made[0], [m["step"] for m in metrics]
    assert steps == sorted(set(steps)) and len(steps) == version["metrics"]["steps"]
    accuracy = version["metrics"]["val/accuracy"]
    assert accuracy > 0.9 and abs(accuracy - rm_alone["val/accuracy"]) <= 0.1
    scores = RewardScorer(version["path"], "cpu").score(["question number 1"] * 4,
                                                          ["good answer", "great answer", "bad answer", "poor answer"])
    assert scores[:2].min() > scores[2:].max()  # the saved weights are the trained ones, whole


@pytest.fixture(scope="module", params=["replicate", "shard"])
def steps_on_two_processes(request, tiny_generator, tiny_small_vocab_generator, tiny_encoder):
    """One step of every trainer on two processes against one process, all in one launch (tests/parallel_steps.py):
    (strategy, what the processes printed)."""
    strategy = request.param
    done = run_module("tests.parallel_steps", 2, [tiny_generator, tiny_small_vocab_generator, tiny_encoder, strategy])
    return strategy, done.stdout


def test_an_sft_and_a_reward_model_step_on_two_processes_make_the_update_of_one_process_on_both_batches(
        steps_on_two_processes):
    """Each process steps on its batch; the gradients averaged over the processes (sharded: by FSDP's reduce-scatter,
    the SFT loss through the model's own forward) give one process's step on the mean of both batches' losses."""
    differences = printed(steps_on_two_processes[1], "SFT_RM ")
    for trainer in ("sft", "reward"):
        assert differences[f"{trainer}/moved"] > 1e-4, trainer  # the step moved the weights
        assert differences[trainer] < 1e-5, (trainer, differences)


def test_a_policy_update_step_on_two_processes_makes_the_update_of_one_process_on_the_whole_batch(steps_on_two_processes):
    """Each process updates on half of a step's prompts; the averaged gradients and the statistics over the whole batch
    (standardised rewards, REINFORCE's baseline, PPO's whitening and token count) give one process's update. Sharded,
    the policy and its reference are split across the processes, which sample in lockstep and compute log-probs
    through the model's own forward: the same update, gathered whole."""
    strategy, stdout = steps_on_two_processes
    differences = printed(stdout, "POLICY ")
    for algorithm in ("rloo", "reinforce", "grpo", "dr_grpo", "ppo"):
        assert differences[f"{algorithm}/moved"] > 1e-4, algorithm  # the step moved the weights
        assert differences[algorithm] < 1e-5, (algorithm, differences)
    if strategy == "shard":  # the first process's rows end at once, the second's never: both decode all 6 tokens
        first, second = (printed(stdout, f"LOCKSTEP {rank} ") for rank in (0, 1))
        assert first == {"steps": 5, "padding_after_first": True, "sum": 3.0}
        assert second == {"steps": 5, "padding_after_first": False, "sum": 3.0}
    else:
        assert "LOCKSTEP" not in stdout


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


def test_a_dpo_step_on_two_processes_makes_the_update_and_the_figures_of_one_process_on_the_whole_batch(
        steps_on_two_processes):
    """Rankings of different weights split unevenly over two processes: the loss scaled by the whole batch's weight, the
    gradients averaged, and the held-out figures summed over both processes' rankings give one process's (sharded:
    the process with fewer rankings runs passes of weight 0 beside the other's)."""
    result = printed(steps_on_two_processes[1], "DPO ")
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
