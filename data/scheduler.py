"""The job queue's rule: which queued jobs may start now, given what the running ones hold.

A job declares what it needs, in Ray's vocabulary: `num_cpus` (threads), `num_gpus` and `memory` (MB, an estimate
from its model and settings). Heavy jobs (generation, training, scoring, DPO) take every core of a machine without a
GPU, or one GPU and its share of the cores on a machine with GPUs; light jobs (exports) take nothing that heavy ones
need and run beside them. Queued jobs are considered in queue order; one that does not fit now reserves what it waits
for, so no later job overtakes it on those resources (a light job still starts beside it). The store is the queue:
`data.jobs.dispatch` applies `plan` inside a write transaction, so two app processes never start one job twice.
"""

import os
from dataclasses import dataclass
from pathlib import Path

HEAVY_KINDS = ("generate", "train_rm", "train_policy", "sft", "dpo", "score_queue", "judge")
GPU_ENV_VAR = "RLHF_GPUS"  # how many GPUs the scheduler may hand out; default: what the NVIDIA driver lists
KIND_NAMES = {"generate": "generation", "train_rm": "reward-model training", "train_policy": "policy update",
              "sft": "SFT", "dpo": "DPO", "export": "export", "score_queue": "queue scoring", "judge": "AI judge"}
EMBEDDED_WEIGHTS_MB = {"embedded:SmolLM2-135M-Instruct": 540, "embedded:all-MiniLM-L6-v2": 91}  # fp32 on disk
UNKNOWN_WEIGHTS_MB = 1000  # a Hugging Face id not on this disk


@dataclass(frozen=True)
class Needs:
    num_cpus: int
    num_gpus: int
    memory: int  # MB


@dataclass(frozen=True)
class Capacity:
    num_cpus: int
    num_gpus: int
    memory: int  # MB


@dataclass(frozen=True)
class Decision:
    job_id: int
    start: bool
    gpus: tuple[int, ...] = ()  # the GPU indices it is given when it starts
    waits_for: str = ""  # why not, for the job card: "job 12 (reward-model training)"


def machine_capacity() -> Capacity:
    """This machine's cores, GPUs (from $RLHF_GPUS, else the NVIDIA driver's list, within $CUDA_VISIBLE_DEVICES) and memory."""
    return Capacity(os.cpu_count() or 1, gpu_count(), _total_memory_mb())


def gpu_count() -> int:
    if os.environ.get(GPU_ENV_VAR, "").strip():
        return int(os.environ[GPU_ENV_VAR])
    driver = Path("/proc/driver/nvidia/gpus")
    present = len(list(driver.iterdir())) if driver.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        present = min(present, len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"]))
    return present


def _total_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return 16_000


def needs(kind: str, args: dict, capacity: Capacity, weights_mb: int) -> Needs:
    """What a job of `kind` takes on this machine. `weights_mb`: its main model's fp32 weights.

    >>> needs("train_rm", {}, Capacity(2, 0, 24000), 91)
    Needs(num_cpus=2, num_gpus=0, memory=1864)
    >>> needs("train_policy", {"lora": False}, Capacity(16, 2, 128000), 540)
    Needs(num_cpus=8, num_gpus=1, memory=5200)
    >>> needs("train_policy", {"processes": 2}, Capacity(16, 4, 128000), 540)
    Needs(num_cpus=8, num_gpus=2, memory=7160)
    >>> needs("export", {}, Capacity(2, 0, 24000), 0)
    Needs(num_cpus=0, num_gpus=0, memory=500)
    """
    if not is_heavy(kind, args):
        return Needs(0, 0, 500)
    on_gpu = capacity.num_gpus > 0 and args.get("device", "auto") != "cpu"
    processes = max(1, int(args.get("processes") or 1))  # under accelerate launch: one GPU each, a model copy each
    gpus = processes if on_gpu else 0
    cpus = max(1, capacity.num_cpus * gpus // capacity.num_gpus) if on_gpu else capacity.num_cpus
    return Needs(cpus, gpus, memory_estimate(kind, args, weights_mb) * processes)


def is_heavy(kind: str, args: dict) -> bool:
    """Generation whose every completion comes from remote generators, or a remote judge, only waits on the network:
    light."""
    if kind == "judge":
        return not args.get("remote")
    if kind == "generate" and args.get("remote"):
        remote = sum(int(part.split("=")[1]) for part in str(args["remote"]).split(",") if "=" in part)
        return remote < int(args.get("k", 4))
    return kind in HEAVY_KINDS


def memory_estimate(kind: str, args: dict, weights_mb: int) -> int:
    """MB a job holds at its peak, roughly: the weights times the copies it keeps (reference, gradients, AdamW's two
    moments), plus activations and the runtime.

    >>> memory_estimate("generate", {}, 540)
    1310
    """
    runtime = 500
    if kind in ("generate", "score_queue", "judge"):  # a head-to-head's other version: a second model about its size
        return runtime + int(1.5 * weights_mb) * (2 if kind == "generate" and args.get("versus_k") else 1)
    if kind == "train_policy" and args.get("judge_version") is not None:  # a local judge beside the policy, about its size
        runtime += int(1.5 * weights_mb)
    full_weights = not args.get("lora", kind in ("train_policy", "dpo"))
    copies = {"train_rm": 4, "sft": 4, "train_policy": 5, "dpo": 5}.get(kind, 1) if full_weights else 2
    activations = {"train_rm": 1000, "sft": 2000, "train_policy": 2000, "dpo": 2000}.get(kind, 0)
    return runtime + copies * weights_mb + activations


def weights_mb(path: str | None) -> int:
    """The fp32 weights of a model path: the embedded ones by name, a local folder by its weight files."""
    if not path:
        return 0
    if path in EMBEDDED_WEIGHTS_MB:
        return EMBEDDED_WEIGHTS_MB[path]
    folder = Path(path)
    if not folder.is_dir():
        return UNKNOWN_WEIGHTS_MB
    files = [f for pattern in ("*.safetensors", "*.bin", "*.gguf") for f in folder.glob(pattern)]
    return max(1, sum(f.stat().st_size for f in files) // 2**20)


def plan(capacity: Capacity, holding: list[dict], queued: list[dict]) -> list[Decision]:
    """Which queued jobs start now. `holding`: the running (and starting) jobs, each a dict with id, kind,
    num_cpus, num_gpus, memory and gpus (a tuple of indices); `queued`: the waiting ones in queue order, the same keys
    without gpus. A job too big for the machine alone still runs when nothing else holds anything.

    >>> cap = Capacity(2, 0, 24000)
    >>> held = [dict(id=1, kind="train_rm", num_cpus=2, num_gpus=0, memory=1500, gpus=())]
    >>> waiting = [dict(id=2, kind="generate", num_cpus=2, num_gpus=0, memory=1300),
    ...            dict(id=3, kind="export", num_cpus=0, num_gpus=0, memory=500)]
    >>> [(d.job_id, d.start, d.waits_for) for d in plan(cap, held, waiting)]
    [(2, False, 'job 1 (reward-model training)'), (3, True, '')]
    """
    free_cpus = capacity.num_cpus - sum(j["num_cpus"] for j in holding)
    free_memory = capacity.memory - sum(j["memory"] for j in holding)
    free_gpus = [g for g in range(capacity.num_gpus) if not any(g in j["gpus"] for j in holding)]
    holders = list(holding)  # who holds what, running jobs first, then the queued ones that reserved it
    decisions = []
    for job in queued:
        cpus = min(job["num_cpus"], capacity.num_cpus)
        alone = not holders
        fits = ((cpus == 0 or cpus <= free_cpus) and job["num_gpus"] <= len(free_gpus)
                and (job["memory"] <= free_memory or alone))
        if fits:
            given, free_gpus = tuple(free_gpus[:job["num_gpus"]]), free_gpus[job["num_gpus"]:]
            decisions.append(Decision(job["id"], True, given))
        else:
            decisions.append(Decision(job["id"], False, waits_for=_blocker(job, holders)))
        free_cpus -= cpus  # a job that waits reserves what it asked for: nobody behind overtakes it there
        free_memory -= job["memory"]
        if not fits:
            free_gpus = free_gpus[job["num_gpus"]:]
        holders.append({**job, "gpus": ()})
    return decisions


def _blocker(job: dict, holders: list[dict]) -> str:
    """The first job holding (or reserving) what `job` needs."""
    for other in holders:
        if (job["num_cpus"] and other["num_cpus"]) or (job["num_gpus"] and other["num_gpus"]) or job["memory"]:
            return f"job {other['id']} ({KIND_NAMES.get(other['kind'], other['kind'])})"
    return "free resources"
