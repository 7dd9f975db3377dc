"""The admin screens, the annotate page and the exports on big stores.

    python -m bench.admin_scale [--sizes small large] [--repeats 20]

Seeds `small` (10k prompts, 50k rankings, 100 annotators) and `large` (100k prompts, 500k rankings,
300 annotators), K=4, rankings spread over 60 days with seconds. Then, each in a process of its own:
- every admin screen: server time (AppTest run of the real page) of a first open in a new session, and
  of a rerun after 100 new rankings were submitted in between (median and p95 of --repeats each); the
  process's peak RSS;
- the annotate page: submit-to-next server time;
- exporting all pairs as Parquet and as JSONL: time and peak RSS growth over the process after imports.
The one-time catch-up of the stored statistics on a store that never had them is timed too.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import median, peak_rss_mb, percentile, save

SIZES = {"small": (10_000, 50_000, 100), "large": (100_000, 500_000, 300)}  # prompts, rankings, annotators


def seed_store(path: Path, prompts: int, rankings: int, annotators: int) -> dict:
    from bench.annotate_latency import seed
    from data import accounts, builtin, guidelines, quality
    from data.store import open_db

    db = open_db(path)
    builtin.init_db(db)
    db.execute("DELETE FROM completions"); db.execute("DELETE FROM items"); db.execute("DELETE FROM prompts")  # noqa: E702
    db.conn.commit()
    started = time.perf_counter()
    seed(db, n_prompts=prompts, k=4, n_rankings=rankings, n_annotators=annotators)
    with db.atomic():
        db.execute("""UPDATE rankings SET seconds = (abs(random()) % 60000) / 1000.0,
                      created_at = strftime('%Y-%m-%dT12:00:00.000+00:00', '2026-09-01', '+' || (id % 60) || ' days')""")
        # For the Review screen: 2% of rankings flagged, 1.4% with a comment.
        db.execute("""UPDATE rankings SET flags = CASE WHEN id % 100 = 0 THEN '["all are bad"]' WHEN id % 100 = 1
                      THEN '["prompt unclear"]' ELSE flags END, comment = CASE WHEN id % 70 = 0 THEN 'unsure' ELSE comment END""")
        # Arena-style items for the model leaderboard: two completions from each of two of three models.
        db.execute("""UPDATE completions SET generator_version_id = NULL,
                      model_name = 'model-' || char(97 + (item_id + position / 2) % 3)""")
    seeded = time.perf_counter() - started
    admin = accounts.create_user(db, "admin", "admin-password", role="admin")
    for version in ("Prefer the correct answer.", "Prefer the correct answer; then the shorter."):  # agreement by version
        guidelines.save_guidelines(db, "bench", version, admin)
    started = time.perf_counter()
    quality.refresh(db, on_progress=lambda done, total: print(f"\r  statistics: {done:,}/{total:,}", end="", file=sys.stderr))
    print(file=sys.stderr)
    return {"seed_s": round(seeded, 1), "statistics_catch_up_s": round(time.perf_counter() - started, 1)}


def add_rankings(db, n: int, rng: random.Random) -> None:
    """n new rankings by the seeded annotators, through the same call as the annotate page."""
    from data import annotation, queue

    annotators = [row[0] for row in db.execute("SELECT id FROM annotators WHERE name LIKE 'annotator-%'")]
    done = 0
    while done < n:
        me = rng.choice(annotators)
        item = queue.next_item(db, me)
        if item is None:
            continue
        annotation.submit_ranking(db, item.id, me, [[0], [1], [2, 3]], annotation.display_order(item.id, me, 4), seconds=5.0,
                                  repeat_of=item.repeat_of)
        done += 1


def time_screens(path: Path, repeats: int) -> dict:
    """Runs in its own process: every admin screen, first open and rerun after 100 new rankings."""
    from streamlit.testing.v1 import AppTest

    from ui.navigation import ADMIN_SCREENS, APP_FILE
    from data.store import open_db

    os.environ["RLHF_DB"] = str(path)
    db = open_db(path)
    account = tuple(db.execute("SELECT id, session_epoch FROM annotators WHERE name = 'admin'").fetchone())
    rng = random.Random(0)
    results = {}
    for section, screens in ADMIN_SCREENS.items():
        for file, title, _ in screens:
            first, rerun = [], []
            for _ in range(repeats):
                at = AppTest.from_file(APP_FILE, default_timeout=600)
                at.session_state["account"] = account
                at.run()
                at.switch_page(f"pages/{file}.py")
                started = time.perf_counter()
                at.run()
                first.append(time.perf_counter() - started)
                assert not at.exception, (title, at.exception)
                add_rankings(db, 100, rng)
                started = time.perf_counter()
                at.run()
                rerun.append(time.perf_counter() - started)
            results[title] = {"first_p50_ms": ms(median(first)), "first_p95_ms": ms(percentile(first, 0.95)),
                              "rerun_p50_ms": ms(median(rerun)), "rerun_p95_ms": ms(percentile(rerun, 0.95))}
            print(f"  {title:<22} first p95 {results[title]['first_p95_ms']:>8} ms · rerun p95 {results[title]['rerun_p95_ms']:>8} ms",
                  file=sys.stderr, flush=True)
    return {"screens": results, "peak_rss_mb": round(peak_rss_mb())}


def time_annotate(path: Path, submits: int) -> dict:
    from bench.annotate_latency import time_submits
    from data import accounts
    from data.store import open_db

    os.environ["RLHF_DB"] = str(path)
    accounts.create_user(open_db(path), "newcomer", "a-long-password")
    seconds = time_submits("newcomer", submits)
    return {"submit_to_next_p50_ms": ms(median(seconds)), "submit_to_next_p95_ms": ms(percentile(seconds, 0.95))}


def time_export(path: Path, fmt: str) -> dict:
    from data import export
    from data.store import open_db

    db = open_db(path)
    baseline = peak_rss_mb()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        rows = export.write_export(db, "pairs", fmt, Path(folder) / f"pairs.{fmt}")
        seconds = time.perf_counter() - started
        size = (Path(folder) / f"pairs.{fmt}").stat().st_size
    return {"rows": rows, "seconds": round(seconds, 1), "file_mb": round(size / 1e6), "peak_rss_growth_mb": round(peak_rss_mb() - baseline)}


def ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


def in_process(phase: str, *args) -> dict:
    """Run one phase in a fresh Python process, so its time and peak RSS are its own."""
    out = subprocess.run([sys.executable, "-m", "bench.admin_scale", "--phase", phase, *map(str, args)], check=True,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "STREAMLIT_LOGGER_LEVEL": "error"}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--submits", type=int, default=100)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phases = {"seed": lambda p, *a: seed_store(Path(p), *map(int, a)), "screens": lambda p, r: time_screens(Path(p), int(r)),
                  "annotate": lambda p, n: time_annotate(Path(p), int(n)), "export": lambda p, f: time_export(Path(p), f)}
        print(json.dumps(phases[args.phase](*args.args)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            path = Path(folder) / f"{size}.db"
            prompts, rankings, annotators = SIZES[size]
            print(f"{size}: seeding {prompts:,} prompts, {rankings:,} rankings, {annotators} annotators", file=sys.stderr, flush=True)
            result = {"prompts": prompts, "rankings": rankings, "annotators": annotators, **in_process("seed", path, *SIZES[size])}
            print(f"{size}: screens ({args.repeats} first opens and {args.repeats} reruns each)", file=sys.stderr, flush=True)
            result.update(in_process("screens", path, args.repeats))
            result["annotate"] = in_process("annotate", path, args.submits)
            result["export"] = {fmt: in_process("export", path, fmt) for fmt in ("parquet", "jsonl")}
            print(f"{size}: {json.dumps(result['annotate'])} {json.dumps(result['export'])}", file=sys.stderr, flush=True)
            results[size] = result
    save("admin_scale" if args.sizes == list(SIZES) else f"admin_scale_{'_'.join(args.sizes)}", results)


if __name__ == "__main__":
    main()
