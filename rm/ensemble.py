"""A bootstrap ensemble of small reward heads on frozen embeddings: an uncertainty that costs seconds, not a retrain.

The queue's 'least certain first' order asks how unsure the reward model is about an item's order. The reward
model's own gap (rm/uncertainty.py:ranking_uncertainty) answers with one model's confidence, which says nothing about
what it has not seen, and refreshing it means retraining a transformer. Here a frozen backbone embeds every
(prompt, completion) once; M linear Bradley-Terry heads, each on a bootstrap resample of the ranked pairs, train in
well under a second on a CPU; where they disagree is where more rankings teach most (BALD: the information a
ranking would give about the heads):
    x_p = e(chosen_p) - e(rejected_p)                                 [P, D] a pair's embedding difference
    L_m = sum_p b_mp softplus(-x_p . w_m) / sum_p b_mp + l2 |w_m|^2    b_mp ~ Poisson(1), one resample per head
    p_m = sigmoid(r_mi - r_mj) for each pair (i, j) of an item's K    [M]
    BALD = H(mean_m p_m) - mean_m H(p_m), averaged over the pairs, / ln 2 (0: the heads agree, 1: the most)

`bench/active_learning.py --learner ensemble` measures whether serving by it saves rankings (bench/README.md).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rm.data import encode
from rm.model import backbone_kind, resolve_backbone


@dataclass
class EnsembleConfig:
    heads: int = 8  # M bootstrap heads
    l2: float = 1e-3  # weight decay of each head
    steps: int = 50  # L-BFGS iterations (the loss is convex: it converges in tens)
    seed: int = 0


class Embedder:
    """Frozen (prompt, completion) embeddings [N, D] from a backbone: the mean of an encoder's last hidden states
    over real tokens, or a decoder's last real token; L2-normalised."""

    def __init__(self, backbone: str, device: str = "cpu", max_length: int = 256, batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_backbone(backbone)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval().requires_grad_(False)
        self.kind = backbone_kind(self.model.config)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length, self.batch_size, self.device = max_length, batch_size, device

    @torch.no_grad()
    def __call__(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(prompts), self.batch_size):
            encoded = encode(self.tokenizer, self.kind, prompts[start:start + self.batch_size],
                             completions[start:start + self.batch_size], self.max_length)
            self.tokenizer.padding_side = "right"
            batch = self.tokenizer.pad(encoded, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state.float()  # [B, T, D]
            mask = batch["attention_mask"].unsqueeze(-1).float()  # [B, T, 1]
            if self.kind == "encoder":
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B, D]
            else:
                last = batch["attention_mask"].sum(1) - 1  # [B] right padding: the last real token
                pooled = hidden[torch.arange(len(last)), last]  # [B, D]
            out.append(F.normalize(pooled, dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0, self.model.config.hidden_size)


def fit_heads(chosen: torch.Tensor, rejected: torch.Tensor, config: EnsembleConfig = EnsembleConfig()) -> torch.Tensor:
    """M linear Bradley-Terry heads [M, D] from pairs' embeddings chosen, rejected [P, D], each on its own bootstrap
    resample (Poisson(1) weights), all at once with L-BFGS."""
    generator = torch.Generator().manual_seed(config.seed)
    x = (chosen - rejected).float()  # [P, D]
    counts = torch.poisson(torch.ones(config.heads, len(x)), generator=generator)  # [M, P] bootstrap weights b_mp
    counts = counts / counts.sum(1, keepdim=True).clamp(min=1)
    w = torch.zeros(config.heads, x.shape[1], requires_grad=True)  # [M, D]
    optimizer = torch.optim.LBFGS([w], max_iter=config.steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        margins = w @ x.T  # [M, P] r(chosen) - r(rejected) per head
        loss = (counts * F.softplus(-margins)).sum() + config.l2 * (w ** 2).sum()  # the M heads' losses, summed
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def head_rewards(heads: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Rewards [M, N] of N embedded completions under each head."""
    return heads @ embeddings.T


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def ensemble_uncertainty(rewards: torch.Tensor) -> float:
    """BALD of one item from its K completions' rewards under the M heads [M, K], in [0, 1].

    >>> ensemble_uncertainty(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # the heads agree: nothing to learn
    0.0
    >>> round(ensemble_uncertainty(torch.tensor([[9.0, -9.0], [-9.0, 9.0]])), 3)  # sure, and opposite
    1.0
    """
    i, j = torch.triu_indices(rewards.shape[1], rewards.shape[1], offset=1)  # [P] each pair once
    p = torch.sigmoid(rewards[:, i] - rewards[:, j])  # [M, P] each head's P(i above j)
    bald = binary_entropy(p.mean(0)) - binary_entropy(p).mean(0)  # [P]
    return max(0.0, (bald.mean() / math.log(2)).item())
