"""Importing a 100k-line preference file, and refusing a bad one (issue 23).

    python -m bench.import_scale [--lines 100000] [--repeats 3]

Writes two TRL-format JSONL files of `--lines` pairs (prompts of ~40 words, answers of ~60, as chat data is): a good
one, and the same with 1% of its lines broken (three kinds: not JSON, a number for an answer, a blank prompt). Each
run is `python -m data import` on a fresh store in a process of its own, as a user runs it:
- the good file: seconds for the whole command (read, store, the statistics and leaderboard catch-up), its peak RSS;
- the bad file: seconds until it is refused with every error named (nothing stored).
Medians over `--repeats`.
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import median, save

WORDS = ("the model answer prompt data rank better worse because reason rain cloud river stone light quick careful "
         "simple exact short long clear vague kind useful wrong right").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_files(folder: Path, lines: int, seed: int = 0) -> tuple[Path, Path, int]:
    rng = random.Random(seed)
    good, bad = folder / "pairs.jsonl", folder / "pairs-bad.jsonl"
    broken = 0
    with good.open("w") as g, bad.open("w") as b:
        for i in range(lines):
            record = {"prompt": f"{i}. " + sentence(rng, 40), "chosen": sentence(rng, 60), "rejected": sentence(rng, 60)}
            line = json.dumps(record)
            g.write(line + "\n")
            if i % 100 == 7:
                broken += 1
                line = ["{not json", json.dumps({**record, "chosen": 5}), json.dumps({**record, "prompt": " "})][i % 3]
            b.write(line + "\n")
    return good, bad, broken


def run_import(folder: Path, file: Path, run: int) -> dict:
    db = folder / f"store-{file.stem}-{run}.db"
    command = [sys.executable, "-m", "data", "--db", str(db), "import", str(file), "--set", "bench"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    return {"seconds": seconds, "code": done.returncode, "peak_rss_mb_so_far": peak_mb,
            "stdout": done.stdout, "stderr_tail": done.stderr[-300:],
            "refusal": next((line for line in done.stderr.splitlines() if "refused" in line), "")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="import_scale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        good, bad, broken = write_files(folder, args.lines)
        runs = {"good": [], "bad": []}
        for run in range(args.repeats):  # interleaved: the machine's noise hits both alike
            runs["bad"].append(run_import(folder, bad, run))
            runs["good"].append(run_import(folder, good, run))
            print(f"run {run}: good {runs['good'][-1]['seconds']:.1f} s, bad {runs['bad'][-1]['seconds']:.1f} s", file=sys.stderr)
        sizes = {"good_mb": round(good.stat().st_size / 2**20, 1), "bad_mb": round(bad.stat().st_size / 2**20, 1)}
    first = runs["good"][0]
    result = json.loads(first["stdout"]) if first["code"] == 0 else {"error": first["stderr_tail"]}
    save(args.out, {
        "lines": args.lines, "broken_lines": broken, **sizes, "repeats": args.repeats,
        "good_import_s": [round(r["seconds"], 1) for r in runs["good"]],
        "median_good_import_s": round(median([r["seconds"] for r in runs["good"]]), 1),
        "bad_refused_s": [round(r["seconds"], 1) for r in runs["bad"]],
        "median_bad_refused_s": round(median([r["seconds"] for r in runs["bad"]]), 1),
        "bad_exit_codes": sorted({r["code"] for r in runs["bad"]}),
        "bad_refusal_line": runs["bad"][0]["refusal"],
        "peak_rss_mb_any_run": round(max(r["peak_rss_mb_so_far"] for r in runs["good"] + runs["bad"]), 1),
        "result_of_first_good_run": result,
    })


if __name__ == "__main__":
    main()
