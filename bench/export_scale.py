"""Exporting every pair of a large store: streamed (`write_export`) against the whole frame in memory.

    python -m bench.export_scale [--rankings 40000]

Seeds a temporary database with the seed of bench.annotate_latency (10,000 prompts, K=4, 40,000
rankings = 200,000 pairs, 100 annotators), then exports all pairs as Parquet and as JSONL, each arm
in its own process, and reports wall time and peak RSS. "before" is data/export.py as of commit
BEFORE (a whole pandas frame, then serialised), read from git; "streamed" is `write_export`.
The per-annotator quality table (`quality.annotator_table`, one identical call in both arms) is
computed once up front and handed to the arms, so the times are the export's own.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.annotate_latency import seed
from bench.common import peak_rss_mb, save
from data import export, quality
from data.store import open_db

ARMS = ("before", "streamed")
FORMATS = ("parquet", "jsonl")
BEFORE = "9eabdcf"  # the last commit whose data/export.py built whole frames


def export_before(folder: Path):
    """data/export.py as of BEFORE, imported from a copy in `folder`."""
    path = folder / "export_before.py"
    path.write_text(subprocess.run(["git", "show", f"{BEFORE}:data/export.py"], capture_output=True, text=True, check=True,
                                   cwd=Path(__file__).resolve().parent).stdout)
    spec = importlib.util.spec_from_file_location("export_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_once(arm: str, fmt: str, folder: Path) -> dict:
    """One arm, in this process: rows, seconds, peak RSS, size of the file it wrote."""
    table = json.loads((folder / "quality.json").read_text())
    quality.annotator_table = lambda db: table  # computed once by the parent (see the docstring)
    db = open_db(folder / "bench.db")
    out = folder / f"{arm}.{fmt}"
    before = export_before(folder) if arm == "before" else None
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    if before:
        frame = before.export_frame(db, "pairs")
        out.write_bytes(before.frame_to_bytes(frame, fmt))
        rows = len(frame)
    else:
        rows = export.write_export(db, "pairs", fmt, out)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss_mb()), "rss_before_mb": round(rss_before),
            "file_mb": round(out.stat().st_size / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rankings", type=int, default=40_000)
    parser.add_argument("--arm", nargs=3, metavar=("ARM", "FORMAT", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        arm, fmt, folder = args.arm
        print(json.dumps(export_once(arm, fmt, Path(folder))))
        return
    with tempfile.TemporaryDirectory() as folder:
        db = open_db(Path(folder) / "bench.db")
        seed(db, n_prompts=10_000, k=4, n_rankings=args.rankings, n_annotators=100)
        started = time.perf_counter()
        (Path(folder) / "quality.json").write_text(json.dumps(quality.annotator_table(db)))
        quality_s = time.perf_counter() - started
        results = {}
        for fmt in FORMATS:
            for arm in ARMS:
                command = [sys.executable, "-m", "bench.export_scale", "--arm", arm, fmt, folder]
                results[f"{fmt}/{arm}"] = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    ratio = lambda fmt, key: round(results[f"{fmt}/before"][key] / results[f"{fmt}/streamed"][key], 2)  # noqa: E731
    save("export_scale", {"pairs": results["parquet/streamed"]["rows"], "annotator_table_seconds": round(quality_s, 1),
                          "chunk_rows": export.CHUNK_ROWS, "arms": results,
                          "before_over_streamed": {fmt: {"seconds": ratio(fmt, "seconds"), "peak_rss": ratio(fmt, "peak_rss_mb")}
                                                        for fmt in FORMATS}})


if __name__ == "__main__":
    main()
