"""The K-wise Bradley-Terry loss of InstructGPT, on rewards already computed.

Each completion of a ranking is encoded once; the loss of a ranking is the mean of
-log sigmoid(r_better - r_worse) over the pairs it implies (ties give none), and a
batch averages its rankings, each by its weight when given (an annotator's reliability,
data/reliability.py). A K=4 ranking costs 4 forward passes, not 12.

With `--ties davidson` the tied pairs teach too (davidson_loss): Davidson's extension of Bradley-Terry gives a tie
the probability nu * sqrt(pi_a pi_b) / (pi_a + pi_b + nu * sqrt(pi_a pi_b)), pi = exp(r), with a learned nu, so
a tie pulls the two rewards together and nu learns how often people tie; as nu -> 0 it is the loss above.
"""

import math

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
    return mean_per_ranking(pair_loss, ranking_of_pair, ranking_weight)


def davidson_loss(rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor, ranking_of_pair: torch.Tensor,
                  tied_a: torch.Tensor, tied_b: torch.Tensor, ranking_of_tie: torch.Tensor, log_nu: torch.Tensor,
                  ranking_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Davidson's ties: strict pairs [P] as in kwise_loss, tied pairs [Q] (tied_a, tied_b, ranking_of_tie), log_nu a
    scalar -> scalar; each ranking's loss is the mean over all its pairs, strict and tied. With d = r_a - r_b:
        -log P(a > b) = log(1 + e^-d + nu e^(-d/2))        -log P(a = b) = log(e^(d/2) + e^(-d/2) + nu) - log nu

    >>> r, none = torch.tensor([2.0, 0.0, 0.0]), torch.zeros(0, dtype=torch.long)  # A > B = C: pairs A>B, A>C; tie B=C
    >>> strict = davidson_loss(r, torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([0, 0]), none, none, none,
    ...                        torch.tensor(-30.0))
    >>> round(strict.item(), 4)  # nu ~ 0 and no tie: the Bradley-Terry loss of kwise_loss
    0.1269
    >>> tie = lambda gap: davidson_loss(torch.tensor([gap, 0.0]), none, none, none, torch.tensor([0]), torch.tensor([1]),
    ...                                 torch.tensor([0]), torch.tensor(0.0)).item()
    >>> round(tie(0.0), 4), round(tie(2.0), 4)  # -log 1/3 at equal rewards, more the further apart
    (1.0986, 1.4076)
    """
    d = rewards[better] - rewards[worse]  # [P]
    strict = torch.logsumexp(torch.stack([torch.zeros_like(d), -d, log_nu - d / 2]), 0)  # [P] -log P(better > worse)
    t = rewards[tied_a] - rewards[tied_b]  # [Q]
    tied = torch.logsumexp(torch.stack([t / 2, -t / 2, log_nu.expand_as(t)]), 0) - log_nu  # [Q] -log P(tie)
    return mean_per_ranking(torch.cat([strict, tied]), torch.cat([ranking_of_pair, ranking_of_tie]), ranking_weight)


def tie_probability(gap: torch.Tensor, log_nu: torch.Tensor) -> torch.Tensor:
    """Davidson's P(tie) of two completions whose rewards differ by `gap`. [P] -> [P]

    >>> round(tie_probability(torch.tensor([0.0]), torch.tensor(0.0)).item(), 4)  # nu = 1, equal rewards: 1/3
    0.3333
    """
    nu = log_nu.exp()
    return nu / (torch.exp(gap / 2) + torch.exp(-gap / 2) + nu)


def initial_log_nu(tie_share: float) -> float:
    """log nu for which two equal rewards tie as often as the training pairs do: P(tie | d = 0) = nu / (2 + nu).

    >>> round(initial_log_nu(0.5), 4)  # half the pairs tied: nu = 2
    0.6931
    """
    share = min(max(tie_share, 0.01), 0.9)
    return math.log(2 * share / (1 - share))


def mean_per_ranking(pair_loss: torch.Tensor, ranking_of_pair: torch.Tensor,
                     ranking_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Each ranking's mean pair loss, averaged over the rankings (by their weights when given). [P], [P], [R] -> scalar"""
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
