"""Score completions with a trained reward model: used by the admin page and the policy update."""

from pathlib import Path

import torch

from data import versions
from policy.models import pick_device
from rm.data import encode
from rm.model import load_reward_model


class RewardScorer:
    """Rewards for (prompt, completion) pairs, batched, on CPU or CUDA."""

    def __init__(self, folder: str | Path, device: str = "auto", batch_size: int = 32):
        self.device = pick_device(device)
        self.model, self.tokenizer, self.config = load_reward_model(folder, self.device)
        self.batch_size = batch_size
        self.folder = Path(folder)

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """[N] float32 rewards on the CPU, in input order."""
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts for {len(completions)} completions")
        rewards = []
        bf16 = self.config.bf16 and (self.device.type == "cpu" or torch.cuda.is_bf16_supported())
        for start in range(0, len(prompts), self.batch_size):
            encoded = encode(self.tokenizer, self.model.kind, prompts[start:start + self.batch_size],
                             completions[start:start + self.batch_size], self.config.max_length)
            self.tokenizer.padding_side = "right"
            batch = self.tokenizer.pad(encoded, return_tensors="pt").to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                rewards.append(self.model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).cpu())
        return torch.cat(rewards) if rewards else torch.empty(0)


def active_scorer(db, device: str = "auto") -> RewardScorer:
    version = versions.active_version(db, "reward")
    if version is None:
        raise LookupError("no active reward model: train one on the admin page (Reward model tab) or pick one")
    return RewardScorer(version["path"], device)
