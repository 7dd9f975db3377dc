"""Run under `accelerate launch --num_processes 2` by tests/test_training_parallel.py: one policy update step per
algorithm, the same rollout in every process (the same weights and seed sample the same tokens), each process
updating on its half of the prompts; the first process then updates a single-process trainer on the whole rollout
and prints the largest weight difference per algorithm as JSON.

    accelerate launch --config_file training/accelerate/data_parallel.yaml --num_processes 2 tests/parallel_policy_step.py TINY_GENERATOR_PATH
"""

import json
import sys

import torch

from policy.config import PolicyConfig
from policy.models import load_generator
from policy.train import PolicyTrainer
from tests.conftest import ShorterIsBetter
from training.parallel import DataParallel

PROMPTS = ["why is the sky blue", "write a short poem", "explain a hash table", "yes or no"]
ALGORITHMS = ("rloo", "reinforce", "grpo", "dr_grpo", "ppo")


def updated_weights(path: str, config: PolicyConfig, parallel: DataParallel) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model, tokenizer = load_generator(path)
    trainer = PolicyTrainer(model, tokenizer, ShorterIsBetter(), config, parallel)
    rollout = trainer.rollout(PROMPTS, seed=5)  # [4 prompts x K], the same in every process
    rows = config.k * len(PROMPTS) // parallel.processes
    trainer.update(rollout.rows(parallel.rank * rows, (parallel.rank + 1) * rows))  # this process's prompts
    return [p.detach().clone() for p in trainer.policy.parameters()]


def main(path: str) -> None:
    parallel = DataParallel("cpu")
    assert parallel.processes == 2, "run under accelerate launch --num_processes 2"
    differences = {}
    for algorithm in ALGORITHMS:
        config = PolicyConfig(algorithm=algorithm, k=2, prompts_per_step=4, max_new_tokens=12, lora=False,
                              learning_rate=1e-3, kl_coef=0.05, ppo_epochs=2, micro_batch_prompts=1, bf16=False)
        shared = updated_weights(path, config, parallel)
        if parallel.is_main:
            alone = updated_weights(path, config, DataParallel("cpu", alone=True))
            differences[algorithm] = max((a - b).abs().max().item() for a, b in zip(shared, alone))
            moved = max((a - b).abs().max().item() for a, b in zip(alone, load_generator(path)[0].parameters()))
            differences[f"{algorithm}/moved"] = moved  # the step changed the weights: the comparison is not vacuous
        parallel.wait()
    if parallel.is_main:
        print("DIFFERENCES " + json.dumps(differences), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
