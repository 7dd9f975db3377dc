"""Score completions with a trained reward model: used by the Reward model screen, the queue's uncertainty scoring, and
the policy update's and DPO's held-out evaluations."""

from pathlib import Path

import torch

from data import versions
from data.rankings import LETTERS, ranking_to_pairs
from training import pick_device
from training.precision import autocast, use_bf16
from training.rankings import load_rankings
from rm.data import encode
from rm.model import load_reward_model, trained_prompt_ids


class RewardScorer:
    """Rewards for (prompt, completion) pairs, batched, on CPU or CUDA."""

    def __init__(self, folder: str | Path, device: str = "auto", batch_size: int = 32):
        self.device = pick_device(device)
        self.model, self.tokenizer, self.config = load_reward_model(folder, self.device)
        self.batch_size = batch_size
        self.folder = Path(folder)

    @classmethod
    def from_model(cls, model, tokenizer, config, batch_size: int = 32) -> "RewardScorer":
        """A scorer for a reward model trained in this process (not saved yet)."""
        self = cls.__new__(cls)
        self.device = next(model.parameters()).device
        self.model, self.tokenizer, self.config, self.batch_size, self.folder = model.eval(), tokenizer, config, batch_size, None
        return self

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """[N] float32 rewards on the CPU, in input order."""
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts for {len(completions)} completions")
        rewards = []
        bf16 = use_bf16(self.config.bf16, self.device, self.model.config)
        for start in range(0, len(prompts), self.batch_size):
            encoded = encode(self.tokenizer, self.model.kind, prompts[start:start + self.batch_size],
                             completions[start:start + self.batch_size], self.config.max_length)
            self.tokenizer.padding_side = "right"
            batch = self.tokenizer.pad(encoded, return_tensors="pt").to(self.device)
            with autocast(self.device, bf16):
                rewards.append(self.model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).cpu())
        return torch.cat(rewards) if rewards else torch.empty(0)


def active_scorer(db, device: str = "auto") -> RewardScorer:
    version = versions.active_version(db, "reward")
    if version is None:
        raise LookupError("no active reward model: train one on the Train → Reward model screen or pick one")
    return RewardScorer(version["path"], device)


def item_rewards(db, scorer: RewardScorer, item_id: int) -> list[dict]:
    """An item's completions with their rewards and each annotator's rank, best reward first."""
    from data.annotation import get_item, rankings_of_item

    item = get_item(db, item_id)
    rewards = scorer.score([item.prompt] * item.k, [c.text for c in item.completions]).tolist()
    rows = [{"completion": LETTERS[c.position], "reward": round(r, 3), "text": c.text} for c, r in zip(item.completions, rewards)]
    for ranking in rankings_of_item(db, item_id):
        if ranking["groups"]:
            rank_of = {p: g + 1 for g, group in enumerate(ranking["groups"]) for p in group}
            for c, row in zip(item.completions, rows):
                row[f"rank by {ranking['annotator']}"] = rank_of[c.position]
    return sorted(rows, key=lambda row: -row["reward"])


def held_out_agreement(db, scorer: RewardScorer, limit: int = 500) -> dict:
    """Pairwise agreement with the human rankings of prompts the model was not trained on (ties in reward count 0.5)."""
    trained = trained_prompt_ids(scorer.folder)
    examples = [e for e in load_rankings(db) if e.prompt_id not in trained][-limit:]
    agree, total = 0.0, 0
    for e in examples:
        rewards = scorer.score([e.prompt] * len(e.completions), e.completions)
        for pair in ranking_to_pairs(e.groups):
            diff = rewards[pair.chosen] - rewards[pair.rejected]
            agree += 1.0 if diff > 0 else 0.5 if diff == 0 else 0.0
            total += 1
    return {"rankings": len(examples), "pairs": total, "accuracy": agree / total if total else None}
