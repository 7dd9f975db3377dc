"""The four trainers mirror each other: each module opens with the same parts in the same order and names its loop
`fit` and its job entry `run_job`, so that a fifth trainer has an obvious shape."""

import ast
import importlib
from pathlib import Path

import pytest

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
