"""Helpers shared by the benchmarks: medians, peak RSS, results written next to this file."""

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values) -> float:
    return statistics.median(values)


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *_):
        self.seconds = time.perf_counter() - self.start


def run_in_own_process(module: str, *args) -> dict:
    """`python -m module args` in a process of its own (so its peak RSS is its own); the JSON of its last stdout line."""
    command = [sys.executable, "-m", module, *map(str, args)]
    output = subprocess.run(command, capture_output=True, text=True)
    if output.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def trl_precision() -> dict:
    """TRL's training arguments for the precision our `auto` picks on this machine: TRL's own default (bf16) is as
    slow as ours was on a CPU without native bf16, so each ratio compares like with like (issue 27)."""
    import torch

    from training.precision import use_bf16

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {"bf16": use_bf16("auto", device)}


def save(name: str, result: dict) -> None:
    """bench/out/NAME.json: the command, the processor it ran on, the result."""
    from training.precision import processor

    OUT.mkdir(exist_ok=True)
    result = {"command": " ".join(sys.orig_argv), "processor": processor(), **result}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
