"""Run under `accelerate launch --num_processes 2` by tests/parallel_steps.py: one policy update step per algorithm,
the same rollout in every process (the same weights and seed sample the same tokens), each process updating on its
half of the prompts; the first process then updates a single-process trainer on the whole rollout: the largest weight
difference per algorithm. Sharded, the policy and its reference are split across the two processes (FSDP2): they
sample in lockstep and the whole weights are gathered to compare."""

import torch

from policy.config import PolicyConfig
from policy.models import load_generator
from policy.sampling import sample_tokens
from policy.train import PolicyTrainer
from tests.conftest import ShorterIsBetter
from training.parallel import DataParallel

PROMPTS = ["why is the sky blue", "write a short poem", "explain a hash table", "yes or no"]
ALGORITHMS = ("rloo", "reinforce", "grpo", "dr_grpo", "ppo")


def updated_weights(path: str, config: PolicyConfig, parallel: DataParallel) -> dict[str, torch.Tensor] | None:
    """The policy's weights after one update (sharded: gathered whole on the first process, None on the other)."""
    torch.manual_seed(0)
    model, tokenizer = load_generator(path)
    trainer = PolicyTrainer(model, tokenizer, ShorterIsBetter(), config, parallel)
    rollout = trainer.rollout(PROMPTS, seed=5)  # [4 prompts x K], the same in every process
    rows = config.k * len(PROMPTS) // parallel.processes
    trainer.update(rollout.rows(parallel.rank * rows, (parallel.rank + 1) * rows))  # this process's prompts
    if parallel.sharded:
        return parallel.full_state(trainer.policy)
    return {name: p.detach().clone() for name, p in trainer.policy.named_parameters()}


def decoding_steps_in_lockstep(path: str, parallel: DataParallel) -> dict:
    """A sharded model sampled by both processes, whose rows end at the first token on the first process (every
    token is an EOS there) and never on the second: each process's decoding steps, and a sum after them (a process
    that stopped early would leave the other's gathers unanswered, or answer them with its next collective)."""
    model, tokenizer = load_generator(path)
    parallel.prepare(model, frozen=True)
    inputs = tokenizer(["a prompt"], return_tensors="pt")
    eos_ids = list(range(model.config.vocab_size)) if parallel.rank == 0 else []
    heard = []
    tokens = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], k=2, max_new_tokens=6, temperature=1.0,
                           eos_ids=eos_ids, pad_id=tokenizer.pad_token_id, on_token=heard.append, lockstep=parallel.everyone)
    after = parallel.total(torch.tensor([float(parallel.rank + 1)])).item()
    return {"steps": len(heard), "padding_after_first": bool((tokens[:, 1:] == tokenizer.pad_token_id).all()), "sum": after}


def differences(parallel: DataParallel, path: str) -> dict[str, float]:
    """On the first process: per algorithm, the largest difference from one process's update, and how far it moved."""
    differences = {}
    for algorithm in ALGORITHMS:
        config = PolicyConfig(algorithm=algorithm, k=2, prompts_per_step=4, max_new_tokens=12, lora=False,
                              learning_rate=1e-3, kl_coef=0.05, ppo_epochs=2, micro_batch_prompts=1, bf16=False)
        shared = updated_weights(path, config, parallel)
        if parallel.is_main:
            alone = updated_weights(path, config, DataParallel("cpu", alone=True))
            differences[algorithm] = max((shared[name] - weight).abs().max().item() for name, weight in alone.items())
            start = dict(load_generator(path)[0].named_parameters())
            moved = max((weight - start[name]).abs().max().item() for name, weight in alone.items())
            differences[f"{algorithm}/moved"] = moved  # the step changed the weights: the comparison is not vacuous
        parallel.wait()
    return differences
