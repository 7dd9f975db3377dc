"""The four trainers mirror each other: each module opens with the same parts in the same order and names its loop
`fit` and its job entry `run_job`, so that a fifth trainer has an obvious shape."""

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest

from data.jobs import JOB_MODULES, job_main

TRAINERS = ["rm.train", "policy.sft", "policy.dpo", "policy.train"]
PARTS = ["config", "data", "loss", "loop", "evaluation", "job entry"]


@pytest.mark.parametrize("name", TRAINERS)
def test_a_trainer_lists_the_same_parts_in_the_same_order(name):
    doc = importlib.import_module(name).__doc__
    where = [doc.find(f"\n  {part}  ") for part in PARTS]
    assert -1 not in where, f"{name}'s docstring does not list {[p for p, w in zip(PARTS, where) if w == -1]}"
    assert where == sorted(where), f"{name}'s docstring lists its parts out of order"


@pytest.mark.parametrize("name", TRAINERS)
def test_a_trainer_names_its_loop_fit_and_its_job_entry_run_job(name):
    module = importlib.import_module(name)
    assert callable(module.fit) and callable(module.run_job)
    tree = ast.parse(Path(module.__file__).read_text())
    [call] = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "job_main"]
    assert call.args[2].id == "run_job"  # `python -m` runs run_job


def _job_main_call(module):
    """The kind and config class a job module's `python -m` entry hands to job_main."""
    tree = ast.parse(Path(module.__file__).read_text())
    [call] = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
              and "job_main" in (getattr(node.func, "id", None), getattr(node.func, "attr", None))]
    return call.args[0].value, getattr(module, call.args[1].id)


@pytest.mark.parametrize("kind", sorted(JOB_MODULES))
def test_every_job_prints_its_help_and_takes_lists_of_names_whole(kind, capsys):
    module = importlib.import_module(JOB_MODULES[kind])
    name, config_cls = _job_main_call(module)
    assert name == kind
    with pytest.raises(SystemExit) as exit:
        job_main(kind, config_cls, run=None, argv=["--help"])  # --help ends before anything runs
    assert exit.value.code == 0 and "--db" in capsys.readouterr().out
    required = {"export": {"out": "pairs.jsonl"}}.get(kind, {})
    lists = [f.name for f in dataclasses.fields(config_cls) if f.name in ("prompt_sets", "annotators")]
    for field in lists:  # a name holding a comma arrives whole; an old job's comma-separated string still parses
        assert getattr(config_cls(**required, **{field: '["a, b", "c"]'}), field) == ["a, b", "c"]
        assert getattr(config_cls(**required, **{field: "a,b"}), field) == ["a", "b"]
        assert getattr(config_cls(**required), field) == []


@pytest.mark.parametrize("kind", ["sft", "train_policy", "dpo"])
def test_a_generator_trainers_learning_rate_follows_lora_unless_given(kind):
    """A full fine-tune at LoRA's rate wrecked a model in a walk of the app: `--lora false` alone takes the full-weight
    rate, on the command line as on the forms."""
    config_cls = _job_main_call(importlib.import_module(JOB_MODULES[kind]))[1]
    full, lora = config_cls(lora=False), config_cls(lora=True)
    assert full.learning_rate == config_cls.LEARNING_RATES[False] < lora.learning_rate == config_cls.LEARNING_RATES[True]
    assert config_cls(lora=False, learning_rate=3e-6).learning_rate == 3e-6
