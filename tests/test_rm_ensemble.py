"""The bootstrap ensemble of reward heads on frozen embeddings (issue 25, item 6)."""

import torch

from rm.ensemble import EnsembleConfig, Embedder, ensemble_uncertainty, fit_heads, head_rewards


def scripted_pairs(n: int, seed: int, dims: int = 16):
    """Pairs of random unit embeddings, the chosen one the one a hidden direction scores higher."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(dims, generator=g)
    a, b = (torch.nn.functional.normalize(torch.randn(n, dims, generator=g), dim=-1) for _ in range(2))
    a_wins = (a @ truth > b @ truth).unsqueeze(1)
    return torch.where(a_wins, a, b), torch.where(a_wins, b, a)


def test_the_heads_learn_a_preference_and_each_sees_its_own_resample():
    chosen, rejected = scripted_pairs(600, seed=0)
    heads = fit_heads(chosen[:400], rejected[:400], EnsembleConfig(heads=8, l2=1e-4))
    assert heads.shape == (8, 16)
    margins = head_rewards(heads, chosen[400:]) - head_rewards(heads, rejected[400:])  # [M, 200]
    assert (margins.mean(0) > 0).float().mean() > 0.9  # the ensemble's mean ranks held-out pairs as the script does
    assert heads.std(0).mean() > 0  # different resamples, different heads
    torch.testing.assert_close(heads, fit_heads(chosen[:400], rejected[:400], EnsembleConfig(heads=8, l2=1e-4)))


def test_the_ensembles_uncertainty_falls_as_rankings_come_in():
    chosen, rejected = scripted_pairs(2200, seed=1)
    items = torch.stack([chosen[2000:], rejected[2000:]], 1)  # [200, 2, D] unseen items of two completions
    mean_uncertainty = []
    for n in (10, 100, 2000):
        heads = fit_heads(chosen[:n], rejected[:n], EnsembleConfig(heads=8, l2=1e-3))
        mean_uncertainty.append(sum(ensemble_uncertainty(head_rewards(heads, item)) for item in items) / len(items))
    assert mean_uncertainty[0] > mean_uncertainty[1] > mean_uncertainty[2] >= 0


def test_embeddings_are_unit_vectors_that_do_not_depend_on_the_batch(tiny_encoder):
    embed = Embedder(tiny_encoder, max_length=32)
    prompts, completions = ["why is the sky blue", "hi"], ["light scatters in the air, mostly the blue light", "hello"]
    together = embed(prompts, completions)
    assert together.shape[0] == 2 and torch.allclose(together.norm(dim=-1), torch.ones(2), atol=1e-5)
    alone = embed(prompts[1:], completions[1:])
    torch.testing.assert_close(together[1:], alone, atol=1e-5, rtol=1e-4)  # padding does not move an embedding
