"""Do ties teach? The reward model's Davidson loss (`--ties davidson`: a tie pulls two rewards together, with a learnt
tie rate) against Bradley-Terry that drops tied pairs (the default, as TRL's docs advise), on real human comparisons
with simulated ties.

    python -m bench.ties [--seeds 3] [--items 500] [--teacher 600] [--pool 800] [--tie-share 0.25]

No offline human set has ties (the shared HH-RLHF comparisons have none), so ties are simulated where annotators
would call them: between answers close in quality. A teacher reward model (the embedded MiniLM, 1 epoch of 256
tokens, trained on `--teacher` HH comparisons) scores the next `--pool` and the held-out ones; a pair whose teacher gap is in the smallest
`--tie-share` of gaps becomes a tie (`A = B`), every other pair keeps its human label. Per seed, `--items` of those
pairs are drawn and two students are trained on them at the app's defaults (1 epoch, 256 tokens): one drops the ties,
one learns from them (Davidson). Each is measured on the held-out comparisons of bench.hh: pair accuracy against the
human label on all of them (ties included: the human still chose one), on the strict ones, and, for Davidson, how
often it says a held-out pair ties against how often the same rule ties them (calibration), on tied and strict pairs.
Results: bench/out/ties.json.
"""

import argparse
import random
import statistics

import torch

from bench.common import save
from bench.hh import HumanPair, load_split
from rm.config import RewardConfig
from rm.loss import tie_probability
from rm.score import RewardScorer
from rm.train import fit
from training.rankings import RankingExample

STRICT, TIED = [[0], [1]], [[0, 1]]  # chosen first; or chosen = rejected


def example(pair: HumanPair, groups=STRICT) -> RankingExample:
    return RankingExample(pair.index, pair.prompt.strip(), [pair.chosen.strip(), pair.rejected.strip()], groups)


def train(examples: list[RankingExample], held_out: list[RankingExample], seed: int, ties: str = "ignore"):
    config = RewardConfig(epochs=1, max_length=256, seed=seed, ties=ties)
    if ties == "ignore":  # an all-tied ranking gives no pair: left out, as train_reward_model does
        examples, held_out = ([e for e in rows if e.groups != TIED] for rows in (examples, held_out))
    model, tokenizer, metrics = fit(examples, held_out, config)
    return RewardScorer.from_model(model, tokenizer, config), metrics


def gaps(scorer: RewardScorer, pairs: list[HumanPair]) -> torch.Tensor:
    """r(chosen) - r(rejected) of each pair. [P]"""
    prompts = [p.prompt.strip() for p in pairs]
    rewards = scorer.score(prompts * 2, [p.chosen.strip() for p in pairs] + [p.rejected.strip() for p in pairs])  # [2P]
    return rewards[:len(pairs)] - rewards[len(pairs):]


def with_ties(pairs: list[HumanPair], gap: torch.Tensor, threshold: float) -> list[RankingExample]:
    """Each pair as a ranking: tied where the teacher's gap is under `threshold`, the human label elsewhere."""
    return [example(p, TIED if abs(g) < threshold else STRICT) for p, g in zip(pairs, gap.tolist())]


def accuracy(gap: torch.Tensor) -> float:
    """The share of pairs whose chosen answer scores higher (an equal score counts half). [P] -> float"""
    return ((gap > 0).float() + 0.5 * (gap == 0).float()).mean().item()


def tie_figures(gap: torch.Tensor, tied: torch.Tensor, nu: float) -> dict:
    """How often the held-out pairs tie against how often Davidson's model says they would (its mean P(tie)), and its
    mean P(tie) on the tied and on the strict pairs. gap, tied [P]"""
    p_tie = tie_probability(gap, torch.tensor(nu).log())  # [P]
    return {"tie_share": tied.float().mean().item(), "tie_predicted": p_tie.mean().item(),
            "tie_probability_on_ties": p_tie[tied].mean().item(), "tie_probability_on_strict": p_tie[~tied].mean().item(),
            "tie_nu": nu}


def run_seed(seed: int, args, pool: list[HumanPair], pool_examples: list[RankingExample], held: list[HumanPair],
             held_tied: torch.Tensor) -> dict:
    chosen = random.Random(seed).sample(range(len(pool)), args.items)
    examples = [pool_examples[i] for i in chosen]
    result = {"seed": seed, "items": len(examples), "tied_items": sum(e.groups == TIED for e in examples)}
    for ties in ("ignore", "davidson"):
        scorer, metrics = train(examples, [example(p) for p in held[:16]], seed, ties)  # held out: scored below, whole
        gap = gaps(scorer, held)  # [P] against the human label
        result[ties] = {"human_accuracy_all": accuracy(gap), "human_accuracy_strict": accuracy(gap[~held_tied]),
                        **(tie_figures(gap, held_tied, metrics["tie_nu"]) if ties == "davidson" else {})}
        figures = result[ties]
        print(f"seed {seed} {ties}: accuracy on all {len(held)} held-out human pairs {figures['human_accuracy_all']:.3f}, "
              f"on the {int((~held_tied).sum())} strict ones {figures['human_accuracy_strict']:.3f}"
              + (f"; ties held out {figures['tie_share']:.2f}, predicted {figures['tie_predicted']:.2f} "
                 f"(P(tie) {figures['tie_probability_on_ties']:.2f} on tied pairs, "
                 f"{figures['tie_probability_on_strict']:.2f} on strict)" if "tie_share" in figures else ""), flush=True)
    return result


def summary(runs: list[dict]) -> dict:
    out = {}
    for ties in ("ignore", "davidson"):
        keys = [k for k in runs[0][ties]]
        out[ties] = {k: statistics.mean(r[ties][k] for r in runs) for k in keys}
    gains = [r["davidson"]["human_accuracy_all"] - r["ignore"]["human_accuracy_all"] for r in runs]
    out["gain_all"] = {"mean": statistics.mean(gains), "min": min(gains), "max": max(gains),
                       "seeds_with_a_gain": sum(g > 0 for g in gains), "seeds": len(gains)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--items", type=int, default=500, help="comparisons each student trains on")
    parser.add_argument("--teacher", type=int, default=600, help="comparisons the teacher trains on (never a student's)")
    parser.add_argument("--pool", type=int, default=800, help="comparisons after the teacher's that the students draw from")
    parser.add_argument("--tie-share", type=float, default=0.25, help="share of pairs made ties (public sets: ~10-30%%)")
    args = parser.parse_args()
    train_pairs, held = load_split()
    teacher_pairs, pool = train_pairs[:args.teacher], train_pairs[args.teacher:args.teacher + args.pool]
    teacher, _ = train([example(p) for p in teacher_pairs], [example(p) for p in held[:16]], seed=0)
    pool_gap, held_gap = gaps(teacher, pool), gaps(teacher, held)
    threshold = torch.quantile(pool_gap.abs(), args.tie_share).item()
    pool_examples, held_tied = with_ties(pool, pool_gap, threshold), held_gap.abs() < threshold  # [P] bool
    print(f"teacher: held-out accuracy {accuracy(held_gap):.3f}; pairs within a gap of {threshold:.3f} tie "
          f"({int(held_tied.sum())} of {len(held)} held out)", flush=True)
    runs = [run_seed(seed, args, pool, pool_examples, held, held_tied) for seed in range(args.seeds)]
    save("ties", {"args": vars(args), "teacher_accuracy": accuracy(held_gap), "tie_gap": threshold,
                  "held_out_pairs": len(held), "held_out_ties": int(held_tied.sum()), "runs": runs, "summary": summary(runs)})


if __name__ == "__main__":
    main()
