"""Run under `accelerate launch --num_processes 2` by tests/parallel_steps.py: one DPO step on a batch of rankings of
different weights (one with a tie), each process stepping on its share of the batch (sharded: full weights split
across the processes); the first process then steps a single-process trainer on the whole batch: the largest weight
difference and the held-out figures both give."""

import torch

from policy.config import DPOConfig
from policy.dpo import PreferenceTrainer, encode_ranking
from policy.models import load_generator
from training.parallel import DataParallel
from training.rankings import RankingExample

COMPLETIONS = ["yes it is", "no, never", "maybe so"]
RANKINGS = [RankingExample(i, f"question {i}", COMPLETIONS, groups, weight=weight) for i, (groups, weight) in enumerate(
    [([[0], [1], [2]], 1.0), ([[2], [0, 1]], 0.5), ([[1], [2], [0]], 2.0), ([[0, 2], [1]], 1.5), ([[2], [1], [0]], 1.0)])]


def trained(path: str, parallel: DataParallel, sharded: bool) -> tuple[dict[str, torch.Tensor] | None, dict]:
    """The trainable weights after one step (sharded: gathered whole on the first process), and the held-out figures."""
    torch.manual_seed(0)
    model, tokenizer = load_generator(path)
    config = DPOConfig(lora=not sharded, learning_rate=5e-3, ties="equal", margin_weight=True, bf16=False)
    trainer = PreferenceTrainer(model, tokenizer, config, total_steps=1, parallel=parallel)
    encoded = [encode_ranking(tokenizer, r, 64) for r in RANKINGS]
    trainer.step(parallel.my_share(encoded[:3]))  # a batch of 3: 2 and 1 (sharded, the second adds a pass of weight 0)
    figures = trainer.evaluate(encoded)  # 5 held-out rankings: 3 and 2
    if parallel.sharded:
        return parallel.full_state(trainer.policy), figures
    return {name: p.detach().clone() for name, p in trainer.policy.named_parameters() if p.requires_grad}, figures


def differences(parallel: DataParallel, path: str) -> dict | None:
    """On the first process: the largest difference from one process's step, how far it moved, and both figures."""
    sharded, result = parallel.sharded, None
    shared, shared_figures = trained(path, parallel, sharded)
    parallel.wait()
    if parallel.is_main:
        alone, alone_figures = trained(path, DataParallel("cpu", alone=True), sharded)
        start = {name: p for name, p in load_generator(path)[0].named_parameters()}
        result = {"difference": max((shared[n] - w).abs().max().item() for n, w in alone.items()),
                  "moved": max((w - start[n] if n in start else w).abs().max().item() for n, w in alone.items()),  # LoRA's B starts at 0
                  "shared": shared_figures, "alone": alone_figures}
    parallel.wait()
    return result
