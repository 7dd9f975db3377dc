"""Which precision the trainers and generation jobs compute in: bf16 where the device runs it fast, fp32 elsewhere.

Every config's `bf16` is `auto` (the default), `true` or `false`. `auto` takes bf16 on CUDA devices that support it,
and on CPUs with native bf16 (AVX512-BF16 or AMX) once a short micro-benchmark of the model's own matrix shapes
(a forward and an input-gradient product, both dtypes) confirms that bf16 is the faster there. Without native bf16
the products fall to a generic loop: on an AVX2-only EPYC a forward product took 4x and an input-gradient product 24x
as long as in fp32 (issue 27), so `auto` picks fp32. The benchmark's verdict is cached per machine beside the model
cache (`precision.json`), so it runs once per processor, torch version, thread count and model shape.
"""

import json
import os
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

SETTINGS = ("auto", "true", "false")
BF16_HELP = ("bf16 autocast for matrix products: auto (bf16 on CUDA and on CPUs with native bf16 where it measures faster, "
             "else fp32), true or false")
BENCH_ROWS = 512  # tokens per product in the micro-benchmark: a typical micro-batch
BENCH_REPEATS = 3


@dataclass(frozen=True)
class Precision:
    """The choice and why it was made, as the job log and the job card print it."""

    bf16: bool
    reason: str

    def __str__(self) -> str:
        return f"{'bf16' if self.bf16 else 'fp32'} ({self.reason})"


def normalise(setting) -> str:
    """'auto', 'true' or 'false' from a config value. Configs saved before the setting existed hold a boolean:
    True was the old default (bf16 wherever possible), read as 'auto'; False stays 'false'.

    >>> normalise(True), normalise("False"), normalise("auto"), normalise("1")
    ('auto', 'false', 'auto', 'true')
    """
    if isinstance(setting, bool):
        return "auto" if setting else "false"
    text = str(setting).strip().lower()
    text = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}.get(text, text)
    if text not in SETTINGS:
        raise ValueError(f"bf16 must be auto, true or false, got {setting!r}")
    return text


def choose_precision(setting, device: torch.device, shape: tuple[int, int] = (576, 1536),
                     native: bool | None = None, measure=None) -> Precision:
    """bf16 or fp32 for a model whose products are (tokens x hidden) by (hidden x intermediate) on `device`.

    `native` (does the CPU have bf16 instructions) and `measure` (shape -> {'fp32': s, 'bf16': s}) are read from the
    machine when not given; tests inject them.
    """
    setting = normalise(setting)
    if setting == "false":
        return Precision(False, "bf16 turned off")
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return Precision(supported, "CUDA device with bf16" if supported else "this CUDA device has no bf16")
    if device.type != "cpu":
        return Precision(setting == "true", f"bf16 {'asked for' if setting == 'true' else 'not tried'} on {device.type}")
    native = cpu_has_native_bf16() if native is None else native
    if setting == "true":
        return Precision(True, "bf16 asked for" + ("" if native else
                         f"; this CPU ({cpu_capability()}) has no native bf16, so expect it several times slower than fp32"))
    if not native:
        return Precision(False, f"this CPU ({cpu_capability()}) has no native bf16 (AVX512-BF16 or AMX): fp32 is faster")
    seconds = (measure or measured_matmul_seconds)(shape)
    ratio = seconds["fp32"] / seconds["bf16"]
    if ratio > 1:
        return Precision(True, f"native bf16, measured {ratio:.1f}x as fast as fp32 on this model's shapes")
    return Precision(False, f"the CPU reports native bf16 but ran this model's shapes {1 / ratio:.1f}x slower than fp32")


def use_bf16(setting, device: torch.device, model_config=None) -> bool:
    """Whether to compute in bf16: `choose_precision` for the shapes of a transformers config (or the defaults)."""
    return _chosen(normalise(setting), str(device), model_shape(model_config)).bf16


def precision_for(setting, device: torch.device, model_config=None) -> Precision:
    return _chosen(normalise(setting), str(device), model_shape(model_config))


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast of the matrix products on `device` when `bf16` (what `use_bf16` chose), fp32 otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def load_dtype(config, device: torch.device, model_config=None) -> torch.dtype:
    """The dtype to load a generator in before training it (policy update and DPO): bf16 for LoRA where bf16 is the
    chosen precision (its frozen base is kept in bf16, so the fp32 copy is never made), fp32 for full weights (trained in
    fp32 under bf16 autocast) and wherever fp32 was chosen (bf16 weights on a CPU without native bf16 are several times
    slower, issue 27). SFT loads in fp32 whatever its LoRA setting: see `policy.sft.fit`."""
    return torch.bfloat16 if config.lora and use_bf16(config.bf16, device, model_config) else torch.float32


@lru_cache(maxsize=None)
def _chosen(setting: str, device: str, shape: tuple[int, int]) -> Precision:
    return choose_precision(setting, torch.device(device), shape)


def model_shape(model_config) -> tuple[int, int]:
    """(hidden, intermediate) sizes of a transformers config: the two sides of its largest products."""
    if model_config is None:
        return (576, 1536)  # the embedded SmolLM2's
    hidden = next((getattr(model_config, k) for k in ("hidden_size", "d_model", "n_embd") if getattr(model_config, k, None)), 576)
    inner = next((getattr(model_config, k) for k in ("intermediate_size", "ffn_dim", "n_inner") if getattr(model_config, k, None)), 4 * hidden)
    return int(hidden), int(inner)


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX, as torch reads the processor."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def processor() -> dict:
    """What a benchmark records about the processor it ran on."""
    return {"cpu": cpu_name(), "capability": cpu_capability(), "native_bf16": cpu_has_native_bf16(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measured_matmul_seconds(shape: tuple[int, int]) -> dict:
    """{'fp32': s, 'bf16': s}: the best of a few forward (x @ W.T) plus input-gradient (g @ W) products, read from
    the machine's cache when this processor, torch, thread count and shape were measured before."""
    from training import cache_dir

    key = f"{cpu_name()}|{cpu_capability()}|torch {torch.__version__}|{torch.get_num_threads()} threads|{shape[0]}x{shape[1]}"
    path = cache_dir() / "precision.json"
    cached = _read_json(path)
    if key not in cached:
        cached[key] = {dtype: _time_products(shape, getattr(torch, name))
                       for dtype, name in (("fp32", "float32"), ("bf16", "bfloat16"))}
        _write_json(path, {**_read_json(path), key: cached[key]})
    return cached[key]


def _time_products(shape: tuple[int, int], dtype: torch.dtype) -> float:
    hidden, inner = shape
    x = torch.randn(BENCH_ROWS, hidden, dtype=dtype)  # [T, H]
    w = torch.randn(inner, hidden, dtype=dtype)  # [I, H]
    g = torch.randn(BENCH_ROWS, inner, dtype=dtype)  # [T, I]
    best = float("inf")
    for _ in range(BENCH_REPEATS + 1):  # the first is a warm-up
        started = time.perf_counter()
        x @ w.T  # forward: [T, I]
        g @ w  # input gradient: [T, H]
        best = min(best, time.perf_counter() - started)
    return best


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(value, indent=2))
    os.replace(staging, path)
