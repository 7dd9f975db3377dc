"""Ranking page latency on a large database: server time from submit to the next item rendered.

    python -m bench.annotate_latency [--submits 100]

Seeds a temporary database with 10,000 prompts, 40,000 completions (K=4) and 50,000 rankings
from 100 annotators, then times Streamlit AppTest runs of the real app: each run is one submit
(the callback stores the ranking and its comparisons) plus rendering the next item. The same again with the
seeded set in the 'uncertain' queue order (random uncertainties, 20% random share), side by side.
"""

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from bench.common import median, percentile, save
from data import accounts, annotation, builtin, queue, uncertainty, versions
from data.rankings import ranking_to_pairs
from data.store import now, open_db, to_json

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def seed(db, n_prompts: int, k: int, n_rankings: int, n_annotators: int) -> None:
    rng = random.Random(0)
    created = now()
    with db.atomic():
        db.execute("INSERT INTO prompt_sets (name, rankings_wanted, created_at) VALUES ('bench', 10, ?)", [created])
        db.conn.executemany("INSERT INTO prompts (id, prompt_set, text, created_at) VALUES (?, 'bench', ?, ?)",
                            [(i, f"Prompt {i}: " + "lorem ipsum " * rng.randint(5, 40), created) for i in range(1, n_prompts + 1)])
        db.conn.executemany("INSERT INTO items (id, prompt_id, created_at) VALUES (?, ?, ?)",
                            [(i, i, created) for i in range(1, n_prompts + 1)])
        db.conn.executemany(
            "INSERT INTO completions (item_id, position, text, created_at) VALUES (?, ?, ?, ?)",
            [(i, p, f"Completion {p} of item {i}. " + "dolor sit amet " * rng.randint(10, 120), created)
             for i in range(1, n_prompts + 1) for p in range(k)])
        db.conn.executemany("INSERT INTO annotators (id, name, created_at) VALUES (?, ?, ?)",
                            [(a, f"annotator-{a}", created) for a in range(1, n_annotators + 1)])
        rankings, comparisons, done = [], [], set()
        while len(rankings) < n_rankings:
            item, annotator = rng.randint(1, n_prompts), rng.randint(1, n_annotators)
            if (item, annotator) in done:
                continue
            done.add((item, annotator))
            order = list(range(k))
            rng.shuffle(order)
            groups = [[order[0]], [order[1]], sorted(order[2:])]
            rankings.append((len(rankings) + 1, item, annotator, to_json(groups), to_json(order), created))
            comparisons += [(len(rankings), (item - 1) * k + 1 + p.chosen, (item - 1) * k + 1 + p.rejected, p.margin)
                            for p in ranking_to_pairs(groups)]
        db.conn.executemany("INSERT INTO rankings (id, item_id, annotator_id, groups, display_order, created_at) VALUES (?, ?, ?, ?, ?, ?)", rankings)
        db.conn.executemany("INSERT INTO comparisons (ranking_id, chosen_id, rejected_id, margin) VALUES (?, ?, ?, ?)", comparisons)
        db.execute("UPDATE items SET n_rankings = (SELECT COUNT(*) FROM rankings r WHERE r.item_id = items.id AND r.skipped = 0)")
    db.execute("ANALYZE")


def time_submits(name: str, submits: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    account = open_db(os.environ["RLHF_DB"]).execute("SELECT id, session_epoch FROM annotators WHERE name = ?", [name]).fetchone()
    at.session_state["account"] = tuple(account)  # logged in, as the log-in form leaves it
    at.run()
    seconds = []
    for _ in range(submits):
        typed = next(k for k in at.session_state if str(k).endswith("-typed"))
        at.text_input(key=typed).input("D > C > A = B")
        submit = next(b for b in at.button if b.label == "Submit ranking")
        started = time.perf_counter()
        submit.click().run()
        seconds.append(time.perf_counter() - started)
        assert not at.exception and at.success, "the submit did not go through"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submits", type=int, default=100)
    parser.add_argument("--orders", nargs="+", choices=["oldest", "uncertain"], default=["oldest", "uncertain"],
                        help="queue orders of the seeded set, timed one after the other")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        os.environ["RLHF_DB"] = str(path)
        db = open_db(path)
        builtin.init_db(db)
        db.execute("DELETE FROM completions"); db.execute("DELETE FROM items")  # noqa: E702  only the seeded set
        db.execute("DELETE FROM prompts"); db.execute("DELETE FROM prompt_sets")  # noqa: E702
        started = time.perf_counter()
        seed(db, n_prompts=10_000, k=4, n_rankings=50_000, n_annotators=100)
        seeded_s = time.perf_counter() - started
        accounts.create_user(db, "admin", "admin-password", role="admin")  # past the first-admin set-up
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("prompts", "completions", "rankings", "comparisons")}
        results = {}
        for order in args.orders:  # side by side in one run: the same store, the same machine load
            uncertain_order(db) if order == "uncertain" else uncertainty.set_queue_order(db, "bench", "oldest")
            results[order] = time_queue(db, f"newcomer-{order}", f"annotator-{1 + len(results)}", args.submits)
            print(order, json.dumps(results[order]), flush=True)
    save("annotate_latency", {"database": counts, "seed_seconds": round(seeded_s, 1), "submits": args.submits, **results})


def uncertain_order(db) -> None:
    """The bench set in the 'uncertain' order, each item with a random uncertainty (as a scoring job leaves them)."""
    version = versions.register_version(db, "reward", f"rm-bench-{time.time_ns()}", "/nowhere", activate=True)
    scores = [(row[0], random.Random(row[0]).random()) for row in db.execute("SELECT id FROM items")]
    uncertainty.store_uncertainty(db, version, scores)
    uncertainty.set_queue_order(db, "bench", "uncertain", random_share=0.2)


def time_queue(db, newcomer: str, veteran: str, submits: int) -> dict:
    """Submit-to-next through the page for a new annotator and one with ~500 rankings, and through the data layer."""
    me = accounts.create_user(db, newcomer, "a-long-password").id
    new = time_submits(newcomer, submits)
    old = time_submits(veteran, submits)  # already ranked ~500 items: the NOT EXISTS filter works hardest
    data_only = []
    for _ in range(submits):
        started = time.perf_counter()
        item = queue.next_item(db, me)
        queue.progress(db, me)
        annotation.submit_ranking(db, item.id, me, [[0], [1], [2, 3]], [0, 1, 2, 3], repeat_of=item.repeat_of)
        data_only.append(time.perf_counter() - started)
    ms = lambda xs: {"p50_ms": round(1000 * median(xs), 1), "p95_ms": round(1000 * percentile(xs, 0.95), 1)}  # noqa: E731
    return {"page_newcomer": ms(new), "page_veteran_500_ranked": ms(old), "data_layer_only": ms(data_only)}

if __name__ == "__main__":
    main()
