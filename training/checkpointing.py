"""Gradient checkpointing, an option of every trainer (`--gradient-checkpointing true`): each transformer layer keeps
only its input in the forward pass and recomputes its activations in the backward pass, trading about a third more
compute for activation memory that no longer grows with the number of layers (long sequences, bigger models).

transformers checkpoints a layer only while the model is in train mode. The reward model and SFT train in train
mode (dropout switched off by hand); the policy update and DPO keep the policy in eval mode, so that their sampling
uses the KV cache (a checkpointed layer in train mode turns it off): `gradient_pass` switches the model to train mode
for the forward passes that carry gradients only.
"""

from contextlib import contextmanager

HELP = ("recompute each layer's activations in the backward pass instead of keeping them: less memory for long "
        "sequences or big models, about a third more compute")


def enable(model) -> None:
    """Turn on checkpointing in the transformers model inside `model` (a peft wrapper, our reward model, or itself)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else getattr(model, "classifier", model)
    inner.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


@contextmanager
def gradient_pass(model, on: bool):
    """Train mode for one forward pass with gradients, when checkpointing is on (then back to eval mode)."""
    if not on:
        yield
        return
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        model.train(was_training)
