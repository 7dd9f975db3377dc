"""Gradient checkpointing, an option of every trainer (issue 22): the same update as without it, and really on."""

import pytest
import torch
import transformers.modeling_utils

from policy.config import DPOConfig, PolicyConfig, SFTConfig
from policy.models import load_generator
from rm.config import RewardConfig
from tests.conftest import ShorterIsBetter
from training.rankings import RankingExample

RANKINGS = [RankingExample(i, f"question number {i}", ["a long and fine answer", "no", "bad"], [[0], [1, 2]]) for i in range(6)]


@pytest.fixture
def checkpointed_calls(monkeypatch):
    """How many times a layer went through torch's checkpoint (transformers calls it once per layer and pass)."""
    calls = []
    real = transformers.modeling_utils.checkpoint
    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def trained_weights(train, checkpointing: bool):
    torch.manual_seed(0)
    model = train(checkpointing)
    return [p.detach().clone() for p in model.parameters()]


def reward_model(tiny_encoder):
    from rm.train import fit

    return lambda on: fit(RANKINGS[:4], RANKINGS[4:], RewardConfig(backbone=tiny_encoder, epochs=1, batch_size=2, bf16=False,
                                                                   gradient_checkpointing=on))[0]


def sft(tiny_generator):
    from policy.sft import fit

    rows = [{"prompt": e.prompt, "response": e.completions[0]} for e in RANKINGS]
    return lambda on: fit(*load_generator(tiny_generator), rows[:4], rows[4:], SFTConfig(
        epochs=1, batch_size=2, bf16=False, lora=False, gradient_checkpointing=on))[0]


def policy_update(tiny_generator):
    from policy.train import fit

    prompts = [e.prompt for e in RANKINGS]
    return lambda on: fit(*load_generator(tiny_generator), ShorterIsBetter(), prompts[:4], [], PolicyConfig(
        k=2, prompts_per_step=2, steps=2, max_new_tokens=8, lora=False, bf16=False, eval_prompts=0,
        gradient_checkpointing=on))[0].policy


def dpo(tiny_generator, lora: bool = False):
    from policy.dpo import fit

    return lambda on: fit(*load_generator(tiny_generator), RANKINGS[:4], RANKINGS[4:], DPOConfig(
        epochs=1, rankings_per_step=2, lora=lora, bf16=False, eval_samples=0, learning_rate=1e-3,
        gradient_checkpointing=on))[0].policy


def dpo_with_lora(tiny_generator):
    return dpo(tiny_generator, lora=True)


@pytest.mark.parametrize("trainer, backbone", [(reward_model, "tiny_encoder"), (sft, "tiny_generator"),
                                               (policy_update, "tiny_generator"), (dpo, "tiny_generator"),
                                               (dpo_with_lora, "tiny_generator")])
def test_every_trainer_makes_the_same_update_with_checkpointing_and_really_checkpoints(trainer, backbone, request,
                                                                                       checkpointed_calls):
    train = trainer(request.getfixturevalue(backbone))
    plain = trained_weights(train, False)
    assert checkpointed_calls == []
    checkpointed = trained_weights(train, True)
    assert checkpointed_calls  # the layers went through torch's checkpoint
    changed = [not torch.equal(a, b) for a, b in zip(plain, trained_weights(train, False))]
    assert not any(changed)  # each run is reproducible, so the comparison below means something
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
