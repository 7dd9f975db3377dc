"""Run under `accelerate launch --num_processes 2` by tests/parallel_steps.py: one SFT step and one reward-model step,
each process on its batch of a step of two, replicated or sharded (FSDP2); the first process then takes the same step
alone on both batches (their losses averaged, as the processes' gradients are): the largest weight difference per
trainer."""

import torch

from policy.models import load_generator
from policy.sft import encode_demonstration, make_batches as sft_batches, sft_loss
from rm.config import RewardConfig
from rm.data import make_batches as rm_batches
from rm.model import new_reward_model
from rm.train import ranking_loss
import training.parallel
from training.parallel import DataParallel
from training.rankings import RankingExample

DEMONSTRATIONS = [("why is the sky blue", "Light scatters."), ("write a short poem", "Roses are red, the sky is blue."),
                  ("explain a hash table", "Keys map to buckets."), ("yes or no", "Yes.")]
RANKINGS = [RankingExample(i, f"question {i}", ["yes it is", "no, never", "maybe so"], groups)
            for i, groups in enumerate([[[0], [1], [2]], [[2], [0, 1]], [[1], [2], [0]], [[2], [1], [0]]])]


def sft_model_and_batches(generator: str):
    model, tokenizer = load_generator(generator)
    rows = [encode_demonstration(tokenizer, [{"role": "user", "content": p}], r, 64) for p, r in DEMONSTRATIONS]
    return model.train(), sft_batches(rows, 2, tokenizer.pad_token_id, shuffle=False, seed=0)  # 2 batches of 2


def reward_model_and_batches(encoder: str):
    model, tokenizer = new_reward_model(RewardConfig(backbone=encoder, bf16="false"))
    return model.train(), rm_batches(RANKINGS, tokenizer, model.kind, 64, 6, shuffle=False)  # 2 batches of 2 rankings


def stepped(trainer: str, path: str, parallel: DataParallel) -> dict[str, torch.Tensor] | None:
    """The weights after one step (sharded: gathered whole on the first process, None on the other)."""
    torch.manual_seed(0)
    model, batches = sft_model_and_batches(path) if trainer == "sft" else reward_model_and_batches(path)
    assert len(batches) == 2
    model = parallel.prepare(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    mine = batches if parallel.processes == 1 else [batches[parallel.rank]]
    if trainer == "sft":
        loss = sum(sft_loss(model, b, whole=parallel.sharded) for b in mine) / len(mine)
    else:
        loss = sum(ranking_loss(model(b.input_ids, b.attention_mask, b.token_type_ids), b) for b in mine) / len(mine)
    parallel.backward(loss)
    parallel.clip_gradients([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    if parallel.sharded:
        return parallel.full_state(model)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def differences(parallel: DataParallel, generator: str, encoder: str) -> dict[str, float]:
    """On the first process: per trainer, the largest difference from one process's step, and how far it moved."""
    training.parallel.BUCKET_BYTES, bucket_bytes = 4096, training.parallel.BUCKET_BYTES  # tiny models' gradients in many buckets
    differences = {}
    for trainer, path in (("sft", generator), ("reward", encoder)):
        shared = stepped(trainer, path, parallel)
        if parallel.is_main:
            alone = stepped(trainer, path, DataParallel("cpu", alone=True))
            torch.manual_seed(0)
            start = dict((sft_model_and_batches(path) if trainer == "sft" else reward_model_and_batches(path))[0].named_parameters())
            differences[trainer] = max((shared[name] - weight).abs().max().item() for name, weight in alone.items())
            differences[f"{trainer}/moved"] = max((weight - start[name]).abs().max().item() for name, weight in alone.items())
        parallel.wait()
    training.parallel.BUCKET_BYTES = bucket_bytes
    return differences
