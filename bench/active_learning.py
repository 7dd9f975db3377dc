"""Does serving the reward model's least certain items first make a ranking worth more? A simulation on real data.

    python -m bench.active_learning [--seeds 2] [--pool 600] [--round 50] [--rounds 5] [--resume]
    python -m bench.active_learning --learner ensemble [--seeds 10] [--pool 1000] [--held-out 500] [--rounds 10]

The annotator is scripted with a fixed preference: the human choice of each shared HH-RLHF comparison (an item
of two completions, chosen and rejected). Each strategy starts from the same random first round, then picks each
next round of rankings from the unranked pool:
- random: uniformly;
- uncertain: as the app's 'uncertain' queue order serves them (data/uncertainty.py): the items the current reward
  model is least sure about (rm.uncertainty.ranking_uncertainty: for two completions, the smallest |reward gap|),
  with a random share of 20% of the items fixed in advance by a uniform draw and interleaved;
then retrains the reward model (the embedded MiniLM, the app's defaults: 2 epochs, 256 tokens) from scratch on all
rankings so far and measures its accuracy on the same held-out comparisons. Reports accuracy against the number of
rankings per strategy and seed, and how many rankings the uncertain order needs to reach the random order's final
accuracy. Target of issue 11: the same held-out accuracy with >= 30% fewer rankings.

With `--learner ensemble` the learner is the bootstrap ensemble of linear heads on frozen MiniLM embeddings
(rm/ensemble.py): every completion is embedded once, a round retrains in under a second, so many seeds and long
curves are cheap. Three orders then: random; uncertain (the gap of the heads' mean, ranking_uncertainty); and
ensemble (the heads' disagreement, BALD); both uncertain orders keep the queue's 20% random share. Accuracy is the
heads' mean on the held-out comparisons. Results: bench/out/active_learning_ensemble.json.
"""

import argparse
import json
import random
import statistics
import time

import torch

from bench.common import OUT, save
from bench.hh import load_split
from rm.config import RewardConfig
from rm.score import RewardScorer
from rm.train import fit
from rm.ensemble import EnsembleConfig, Embedder, ensemble_uncertainty, fit_heads, head_rewards
from rm.uncertainty import ranking_uncertainty
from training import EMBEDDED_ENCODER
from training.rankings import RankingExample

RANDOM_SHARE = 0.2


def as_example(pair) -> RankingExample:
    return RankingExample(pair.index, pair.prompt.strip(), [pair.chosen.strip(), pair.rejected.strip()], [[0], [1]])


def accuracy(scorer: RewardScorer, examples: list[RankingExample]) -> float:
    rewards = scorer.score([e.prompt for e in examples for _ in e.completions], [c for e in examples for c in e.completions]).view(-1, 2)
    gap = rewards[:, 0] - rewards[:, 1]  # chosen minus rejected
    return ((gap > 0).float() + 0.5 * (gap == 0).float()).mean().item()


def uncertain_first(scorer: RewardScorer, pool: list[RankingExample], draws: dict[int, float], n: int) -> list[RankingExample]:
    """The n items the queue would serve next in the 'uncertain' order (data/uncertainty.py): by priority, the item's
    uncertainty (rm.uncertainty.ranking_uncertainty), or for the random share (its fixed draw below RANDOM_SHARE)
    draw / RANDOM_SHARE."""
    rewards = scorer.score([e.prompt for e in pool for _ in e.completions], [c for e in pool for c in e.completions]).view(-1, 2)
    priority = [draws[e.prompt_id] / RANDOM_SHARE if draws[e.prompt_id] < RANDOM_SHARE else ranking_uncertainty(r)
                for e, r in zip(pool, rewards)]
    order = sorted(range(len(pool)), key=lambda i: -priority[i])
    return [pool[i] for i in order[:n]]


def curve(strategy: str, first: list[RankingExample], pool: list[RankingExample], held_out: list[RankingExample],
          rounds: int, per_round: int, seed: int, config: RewardConfig) -> list[dict]:
    rng = random.Random(seed)
    draws = {e.prompt_id: rng.random() for e in pool}  # each item's fixed uniform draw, as stored on insert
    ranked, pool, points = list(first), list(pool), []
    for r in range(rounds):
        started = time.perf_counter()
        model, tokenizer, _ = fit(ranked, held_out[:1], config)  # one held-out ranking: fit's own evaluation stays cheap
        scorer = RewardScorer.from_model(model, tokenizer, config)
        points.append({"rankings": len(ranked), "held_out_accuracy": accuracy(scorer, held_out)})
        print(f"{strategy} seed {seed}: {len(ranked)} rankings -> {points[-1]['held_out_accuracy']:.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        if r == rounds - 1:
            break
        chosen = rng.sample(pool, per_round) if strategy == "random" else uncertain_first(scorer, pool, draws, per_round)
        chosen_ids = {id(e) for e in chosen}
        ranked += chosen
        pool = [e for e in pool if id(e) not in chosen_ids]
    return points


def served_first(priority: dict[int, float], draws: dict[int, float], pool: list[int], n: int) -> list[int]:
    """The n pool items the queue serves next: the random share by its draw, the others by their priority."""
    key = lambda i: draws[i] / RANDOM_SHARE if draws[i] < RANDOM_SHARE else priority[i]  # noqa: E731
    return sorted(pool, key=key, reverse=True)[:n]


def ensemble_curve(strategy: str, first: list[int], pool: list[int], held_out: list[int], embeddings: torch.Tensor,
                   rounds: int, per_round: int, seed: int) -> list[dict]:
    """One curve of the cheap learner; items are indices into `embeddings` [N, 2, D] (chosen, rejected)."""
    rng = random.Random(seed)
    draws = {i: rng.random() for i in pool}
    ranked, pool, points = list(first), list(pool), []
    config = EnsembleConfig(seed=seed)
    for r in range(rounds):
        heads = fit_heads(embeddings[ranked, 0], embeddings[ranked, 1], config)  # [M, D]
        margins = (head_rewards(heads, embeddings[held_out, 0]) - head_rewards(heads, embeddings[held_out, 1])).mean(0)
        points.append({"rankings": len(ranked), "held_out_accuracy": ((margins > 0).float() + 0.5 * (margins == 0).float()).mean().item()})
        if r == rounds - 1:
            break
        if strategy == "random":
            chosen = rng.sample(pool, per_round)
        else:
            rewards = head_rewards(heads, embeddings[pool].flatten(0, 1)).view(len(heads), len(pool), 2)  # [M, n, 2]
            score = (ensemble_uncertainty if strategy == "ensemble" else lambda r: ranking_uncertainty(r.mean(0)))
            chosen = served_first({i: score(rewards[:, k]) for k, i in enumerate(pool)}, draws, pool, per_round)
        taken = set(chosen)
        ranked += chosen
        pool = [i for i in pool if i not in taken]
    return points


def main_ensemble(args, pool_all: list[RankingExample], held_out: list[RankingExample]) -> None:
    started = time.perf_counter()
    embed = Embedder(EMBEDDED_ENCODER)
    everything = pool_all + held_out
    flat = embed([e.prompt for e in everything for _ in range(2)], [c for e in everything for c in e.completions])
    embeddings = flat.view(len(everything), 2, -1)  # [N, 2, D] chosen, rejected
    print(f"embedded {len(flat)} completions in {time.perf_counter() - started:.0f} s", flush=True)
    held = list(range(len(pool_all), len(everything)))
    results = {"random": [], "uncertain": [], "ensemble": []}
    settings = {"learner": "ensemble", "pool": args.pool, "held_out": len(held), "per_round": args.round,
                "rounds": args.rounds, "uncertain_order": "the app's queue: a random share fixed by each item's draw"}
    for seed in range(args.seeds):
        pool = random.Random(1000 + seed).sample(range(len(pool_all)), args.pool)
        for strategy in results:
            results[strategy].append(ensemble_curve(strategy, pool[:args.round], pool[args.round:], held, embeddings,
                                                    args.rounds, args.round, seed))
        print(f"seed {seed}: " + ", ".join(f"{s} {runs[-1][-1]['held_out_accuracy']:.3f}" for s, runs in results.items()), flush=True)
    summarise_and_save(settings, results, "active_learning_ensemble")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--pool", type=int, default=600)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--round", type=int, default=50, help="rankings per round (the first round is random for both)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--learner", choices=["reward-model", "ensemble"], default="reward-model",
                        help="reward-model: the MiniLM reward model retrained each round; ensemble: rm/ensemble.py's heads")
    parser.add_argument("--resume", action="store_true",
                        help="keep the seeds of bench/out/active_learning.json (same settings) and run only the next ones")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    train, held = load_split()
    pool_all = [as_example(p) for p in train if p.chosen.strip() and p.rejected.strip() and p.chosen.strip() != p.rejected.strip()]
    held_out = [as_example(p) for p in held if p.chosen.strip() and p.rejected.strip() and p.chosen.strip() != p.rejected.strip()][:args.held_out]
    if args.learner == "ensemble":
        return main_ensemble(args, pool_all, held_out)
    results = {"random": [], "uncertain": []}
    settings = {"pool": args.pool, "held_out": len(held_out), "per_round": args.round, "rounds": args.rounds,
                "uncertain_order": "the app's queue: a random share fixed by each item's draw"}
    previous = json.loads((OUT / "active_learning.json").read_text()) if args.resume else None
    if previous and all(previous.get(k) == v for k, v in settings.items()):
        results = previous["runs"]  # seeds 0..n-1 of an earlier run with the same settings: only the next ones run
        print(f"resuming after {len(results['random'])} seeds from {OUT / 'active_learning.json'}", flush=True)
    for seed in range(len(results["random"]), args.seeds):
        rng = random.Random(1000 + seed)
        pool = rng.sample(pool_all, args.pool)
        first, rest = pool[:args.round], pool[args.round:]
        for strategy in results:
            config = RewardConfig(seed=seed)
            results[strategy].append(curve(strategy, first, rest, held_out, args.rounds, args.round, seed, config))
        summarise_and_save(settings, results)  # after every seed: a long run stopped early keeps what it measured


def summarise_and_save(settings: dict, results: dict, name: str = "active_learning") -> None:
    rounds = settings["rounds"]
    mean_curve = {s: [statistics.mean(run[i]["held_out_accuracy"] for run in runs) for i in range(rounds)]
                  for s, runs in results.items()}
    sizes = [p["rankings"] for p in results["random"][0]]
    target = mean_curve["random"][-1]
    ordered = [s for s in results if s != "random"]
    needed = {s: rankings_to_reach_interpolated(sizes, mean_curve[s], target) for s in ordered}
    seeds = len(results["random"])
    differences = {s: [difference_with_error([run[i]["held_out_accuracy"] - base[i]["held_out_accuracy"]
                                              for run, base in zip(results[s], results["random"])]) for i in range(rounds)]
                   for s in ordered}
    save(name, {
        **settings, "seeds": seeds,
        "random_share_in_uncertain_order": RANDOM_SHARE, "rankings": sizes,
        "mean_held_out_accuracy": {s: [round(a, 4) for a in c] for s, c in mean_curve.items()},
        "minus_random_mean_and_standard_error": differences,
        "random_final_accuracy": round(target, 4), "uncertain_rankings_to_reach_it": needed["uncertain"],
        "saving": None if needed["uncertain"] is None else round(1 - needed["uncertain"] / sizes[-1], 3),
        **({"rankings_to_reach_it": needed, "savings": {s: None if n is None else round(1 - n / sizes[-1], 3)
                                                        for s, n in needed.items()}} if len(ordered) > 1 else {}),
        "runs": results})


def difference_with_error(values: list[float]) -> list[float]:
    """[mean, standard error] of per-seed differences.

    >>> difference_with_error([0.01, 0.03])
    [0.02, 0.01]
    """
    mean = statistics.mean(values)
    error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return [round(mean, 4), round(error, 4)]


def rankings_to_reach_interpolated(sizes: list[int], accuracy: list[float], target: float) -> float | None:
    """The number of rankings at which a curve first reaches the target, linearly interpolated between rounds.

    >>> rankings_to_reach_interpolated([50, 100, 150], [0.5, 0.6, 0.7], 0.65)
    125.0
    """
    for (n0, a0), (n1, a1) in zip(zip(sizes, accuracy), zip(sizes[1:], accuracy[1:])):
        if a0 >= target:
            return float(n0)
        if a1 >= target:
            return round(n0 + (n1 - n0) * (target - a0) / (a1 - a0), 1)
    return float(sizes[-1]) if accuracy[-1] >= target else None

if __name__ == "__main__":
    main()
