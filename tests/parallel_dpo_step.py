"""Run under `accelerate launch --num_processes 2` by tests/test_training_parallel.py: one DPO step on a batch of
rankings of different weights (one with a tie), each process stepping on its share of the batch; the first process
then steps a single-process trainer on the whole batch and prints, as JSON, the largest weight difference and the
held-out figures both give.

    accelerate launch --config_file training/accelerate/data_parallel.yaml --num_processes 2 -m tests.parallel_dpo_step TINY_GENERATOR_PATH
"""

import json
import sys

import torch

from policy.config import DPOConfig
from policy.dpo import PreferenceTrainer, encode_ranking
from policy.models import load_generator
from training.parallel import DataParallel
from training.rankings import RankingExample

COMPLETIONS = ["yes it is", "no, never", "maybe so"]
RANKINGS = [RankingExample(i, f"question {i}", COMPLETIONS, groups, weight=weight) for i, (groups, weight) in enumerate(
    [([[0], [1], [2]], 1.0), ([[2], [0, 1]], 0.5), ([[1], [2], [0]], 2.0), ([[0, 2], [1]], 1.5), ([[2], [1], [0]], 1.0)])]


def trained(path: str, parallel: DataParallel) -> tuple[list[torch.Tensor], dict]:
    torch.manual_seed(0)
    model, tokenizer = load_generator(path)
    config = DPOConfig(lora=True, learning_rate=5e-3, ties="equal", margin_weight=True, bf16=False)
    trainer = PreferenceTrainer(model, tokenizer, config, total_steps=1, parallel=parallel)
    encoded = [encode_ranking(tokenizer, r, 64) for r in RANKINGS]
    trainer.step(parallel.my_share(encoded[:4]))  # a batch of 4: each process 2
    figures = trainer.evaluate(encoded)  # 5 held-out rankings: 3 and 2
    return [p.detach().clone() for p in trainer.policy.parameters() if p.requires_grad], figures


def main(path: str) -> None:
    parallel = DataParallel("cpu")
    assert parallel.processes == 2, "run under accelerate launch --num_processes 2"
    shared, shared_figures = trained(path, parallel)
    parallel.wait()
    if parallel.is_main:
        alone, alone_figures = trained(path, DataParallel("cpu", alone=True))
        print("DPO " + json.dumps({"difference": max((a - b).abs().max().item() for a, b in zip(shared, alone)),
                                   "moved": max(p.abs().max().item() for p in alone),  # LoRA's B starts at 0
                                   "shared": shared_figures, "alone": alone_figures}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
