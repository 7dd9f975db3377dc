"""Does weighting each ranking by its annotator's measured reliability help when some annotators are unreliable?
A simulation on real human comparisons.

    python -m bench.reliability [--seeds 3] [--items 500] [--annotators 10] [--bad 0.3] [--per-item 2] [--gold 20]

Each shared HH-RLHF comparison of the training split (bench.hh; chosen against rejected, the human label taken as the
truth) becomes an item of two completions in a fresh store. Of the annotators, a share `--bad` is unreliable:
`random` ones pick either answer with equal chance, `adversarial` ones always pick the rejected one; the others give
the human label. Each item is ranked by `--per-item` annotators drawn at random, and `--gold` items carry the human
label as gold and are ranked by every annotator (the app serves gold to everyone). The store measures each
annotator's reliability as the app does (data/reliability.py: agreement with the others' consensus, gold accuracy),
and a reward model (the embedded MiniLM at the app's defaults, but 1 epoch of 256 tokens) is trained on all the
rankings without and with `weighting="reliability"`, then scored on the held-out comparisons of bench.hh (the same
for every run). Per seed: which annotators are bad, who ranks what and the training shuffle change together.
"""

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import save
from bench.hh import load_split
from data import annotation, gold, items
from data.items import NewCompletion
from data.reliability import reliability
from data.store import open_db
from rm.config import RewardConfig
from rm.train import fit
from training.rankings import RankingExample, load_rankings, weighted_by_reliability

MODES = ("random", "adversarial")


def as_example(pair) -> RankingExample:
    return RankingExample(pair.index, pair.prompt.strip(), [pair.chosen.strip(), pair.rejected.strip()], [[0], [1]])


def label(kind: str, rng: random.Random) -> list[list[int]]:
    """What an annotator of this kind answers for (chosen = 0, rejected = 1)."""
    if kind == "random":
        return [[0], [1]] if rng.random() < 0.5 else [[1], [0]]
    return [[1], [0]] if kind == "adversarial" else [[0], [1]]


def simulated_store(path: Path, pairs, kinds: dict[str, str], per_item: int, n_gold: int, seed: int):
    """A store in which the annotators of `kinds` (name -> careful/random/adversarial) ranked the pairs."""
    rng = random.Random(seed)
    db = open_db(path)
    items.ensure_prompt_set(db, "hh")
    names = sorted(kinds)
    ids = []
    for pair in pairs:
        prompt_id, _ = items.add_prompt(db, "hh", pair.prompt.strip())
        ids.append(items.add_item(db, prompt_id, [NewCompletion(pair.chosen.strip()), NewCompletion(pair.rejected.strip())]))
    for n, item_id in enumerate(ids):
        if n < n_gold:
            gold.set_gold(db, item_id, [[0], [1]])
        for name in names if n < n_gold else rng.sample(names, per_item):
            me = annotation.annotator_id(db, name)
            annotation.submit_ranking(db, item_id, me, label(kinds[name], rng), annotation.display_order(item_id, me, 2))
    return db


def train_and_score(examples: list[RankingExample], held_out: list[RankingExample], seed: int) -> float:
    config = RewardConfig(epochs=1, max_length=256, seed=seed, validation_fraction=0.2)
    _, _, metrics = fit(examples, held_out, config)
    return metrics["val/accuracy"]


def run_seed(seed: int, args, train_pairs, held_out) -> dict:
    rng = random.Random(seed)
    pairs = rng.sample(train_pairs, args.items)
    names = [f"annotator-{i:02d}" for i in range(args.annotators)]
    bad = set(rng.sample(names, round(args.bad * args.annotators)))
    result = {"seed": seed, "bad": sorted(bad)}
    for mode in MODES:
        kinds = {name: mode if name in bad else "careful" for name in names}
        with tempfile.TemporaryDirectory() as folder:
            db = simulated_store(Path(folder) / "sim.db", pairs, kinds, args.per_item, args.gold, seed)
            table = {row["annotator"]: row["weight"] for row in reliability(db)}
            examples = load_rankings(db)
            weighted = weighted_by_reliability(db, load_rankings(db))
            db.close()
        started = time.perf_counter()
        plain = train_and_score(examples, held_out, seed)
        reweighted = train_and_score(weighted, held_out, seed)
        result[mode] = {"accuracy_unweighted": plain, "accuracy_weighted": reweighted, "gain": reweighted - plain,
                        "mean_weight_bad": statistics.mean(table[n] for n in bad),
                        "mean_weight_careful": statistics.mean(table[n] for n in names if n not in bad),
                        "rankings": len(examples), "seconds": time.perf_counter() - started}
        print(f"seed {seed} {mode}: unweighted {plain:.3f}, weighted {reweighted:.3f} (bad annotators weigh "
              f"{result[mode]['mean_weight_bad']:.2f}, careful {result[mode]['mean_weight_careful']:.2f})", flush=True)
    return result


def summary(runs: list[dict]) -> dict:
    out = {}
    for mode in MODES:
        gains = [r[mode]["gain"] for r in runs]
        out[mode] = {"accuracy_unweighted_mean": statistics.mean(r[mode]["accuracy_unweighted"] for r in runs),
                     "accuracy_weighted_mean": statistics.mean(r[mode]["accuracy_weighted"] for r in runs),
                     "gain_mean": statistics.mean(gains), "gain_min": min(gains), "gain_max": max(gains),
                     "gain_sd": statistics.stdev(gains) if len(gains) > 1 else None,
                     "seeds_with_a_gain": sum(g > 0 for g in gains), "seeds": len(gains)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--annotators", type=int, default=10)
    parser.add_argument("--bad", type=float, default=0.3, help="share of unreliable annotators")
    parser.add_argument("--per-item", type=int, default=2, help="annotators ranking each ordinary item")
    parser.add_argument("--gold", type=int, default=20, help="gold items, ranked by every annotator")
    args = parser.parse_args()
    train_pairs, held_pairs = load_split()
    held_out = [as_example(p) for p in held_pairs]
    runs = [run_seed(seed, args, train_pairs, held_out) for seed in range(args.seeds)]
    save("reliability", {"args": vars(args), "held_out_pairs": len(held_out), "runs": runs, "summary": summary(runs)})


if __name__ == "__main__":
    main()
