"""The K-wise Bradley-Terry loss of InstructGPT, on rewards already computed.

Each completion of a ranking is encoded once; the loss of a ranking is the mean of
-log sigmoid(r_better - r_worse) over the pairs it implies (ties give none), and a
batch averages its rankings, each by its weight when given (an annotator's reliability,
data/reliability.py). A K=4 ranking costs 4 forward passes, not 12.
"""

import torch
import torch.nn.functional as F


def kwise_loss(rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor, ranking_of_pair: torch.Tensor,
               ranking_weight: torch.Tensor | None = None) -> torch.Tensor:
    """rewards [N]; better, worse, ranking_of_pair [P] (indices into rewards / rankings); ranking_weight [R] or None
    (all 1) -> scalar: the rankings' losses averaged with those weights.

    >>> r = torch.tensor([2.0, 0.0, 0.0])  # one ranking A > B = C: pairs A>B, A>C
    >>> round(kwise_loss(r, torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([0, 0])).item(), 4)
    0.1269
    >>> r = torch.tensor([2.0, 0.0, 0.0, 1.0])  # two rankings A > B, and C > D wrongly scored; the second weighs 0
    >>> round(kwise_loss(r, torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0, 1]), torch.tensor([1.0, 0.0])).item(), 4)
    0.1269
    """
    pair_loss = -F.logsigmoid(rewards[better] - rewards[worse])  # [P]
    n_rankings = int(ranking_of_pair.max()) + 1
    per_ranking_sum = torch.zeros(n_rankings, dtype=pair_loss.dtype, device=pair_loss.device).index_add(0, ranking_of_pair, pair_loss)
    pairs_per_ranking = torch.bincount(ranking_of_pair, minlength=n_rankings).clamp(min=1)  # [R]
    has_pairs = torch.bincount(ranking_of_pair, minlength=n_rankings) > 0  # [R]
    per_ranking = (per_ranking_sum / pairs_per_ranking)[has_pairs]  # [R'] each ranking's mean pair loss
    if ranking_weight is None:
        return per_ranking.mean()
    weight = ranking_weight.to(per_ranking.dtype)[has_pairs]  # [R']
    return (weight * per_ranking).sum() / weight.sum().clamp(min=1e-8)


def pairwise_accuracy(rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor) -> float:
    """Share of human pairs the rewards order the same way; an exact reward tie counts 0.5.

    >>> pairwise_accuracy(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 1, 0]), torch.tensor([1, 0, 2]))
    0.5
    """
    diff = rewards[better] - rewards[worse]
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()
