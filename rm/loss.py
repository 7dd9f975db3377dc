"""The K-wise Bradley-Terry loss of InstructGPT, on rewards already computed.

Each completion of a ranking is encoded once; the loss of a ranking is the mean of
-log sigmoid(r_better - r_worse) over the pairs it implies (ties give none), and a
batch averages its rankings. A K=4 ranking costs 4 forward passes, not 12.
"""

import torch
import torch.nn.functional as F


def kwise_loss(rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor, ranking_of_pair: torch.Tensor) -> torch.Tensor:
    """rewards [N]; better, worse, ranking_of_pair [P] (indices into rewards / rankings) -> scalar.

    >>> r = torch.tensor([2.0, 0.0, 0.0])  # one ranking A > B = C: pairs A>B, A>C
    >>> round(kwise_loss(r, torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([0, 0])).item(), 4)
    0.1269
    """
    pair_loss = -F.logsigmoid(rewards[better] - rewards[worse])  # [P]
    n_rankings = int(ranking_of_pair.max()) + 1
    per_ranking_sum = torch.zeros(n_rankings, dtype=pair_loss.dtype, device=pair_loss.device).index_add(0, ranking_of_pair, pair_loss)
    pairs_per_ranking = torch.bincount(ranking_of_pair, minlength=n_rankings).clamp(min=1)  # [R]
    has_pairs = torch.bincount(ranking_of_pair, minlength=n_rankings) > 0
    return (per_ranking_sum / pairs_per_ranking)[has_pairs].mean()


def pairwise_accuracy(rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor) -> float:
    """Share of human pairs the rewards order the same way; an exact reward tie counts 0.5.

    >>> pairwise_accuracy(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 1, 0]), torch.tensor([1, 0, 2]))
    0.5
    """
    diff = rewards[better] - rewards[worse]
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()
