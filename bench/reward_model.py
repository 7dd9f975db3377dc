"""Reward-model training: this project's K-wise trainer against TRL's RewardTrainer, side by side.

    python -m bench.reward_model            # everything (about 15 minutes on 2 cores)
    python -m bench.reward_model --quick    # fewer pairs, a smoke run

Same backbone (the shipped all-MiniLM-L6-v2), same pairs, same epochs, same max length, same
machine; each arm runs in its own process so peak RSS is its own. TRL runs at its defaults
(bf16 autocast, gradient checkpointing, lr 1e-4, batch 8) with `eos_token="[SEP]"`, since the
BERT tokenizer has none. TRL drops pairs longer than max_length instead of truncating them,
so both arms train on the pairs TRL keeps. Held-out accuracy is measured the same way for both:
every one of the held-out pairs, scored with truncation at max_length.
"""

import argparse
import json
import random
import tempfile
import time

import torch

from bench.common import peak_rss_mb, run_in_own_process, save, trl_precision
from bench.hh import HumanPair, load_split
from rm.config import EMBEDDED_ENCODER, RewardConfig
from rm.data import make_batches
from training.rankings import RankingExample
from rm.model import resolve_backbone

MAX_LENGTH = 512
BF16_PEAK_GFLOPS = 420  # measured bf16 matmul peak of this 2-core CPU (issue #3)


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_backbone(EMBEDDED_ENCODER))


def kept_by_trl(pairs: list[HumanPair], tok) -> list[HumanPair]:
    """The pairs TRL keeps: prompt + completion + [SEP], tokenised alone, within max_length for both sides."""
    length = lambda text: len(tok(text + tok.sep_token)["input_ids"])  # noqa: E731
    return [p for p in pairs if length(p.prompt + p.chosen) <= MAX_LENGTH and length(p.prompt + p.rejected) <= MAX_LENGTH]


def k4_rankings(pairs: list[HumanPair], n: int, tok, seed: int = 0) -> list[RankingExample]:
    """Synthetic K=4 rankings: a prompt's two human completions plus two borrowed ones, ranked shortest first."""
    rng = random.Random(seed)
    fits = lambda prompt, text: len(tok(prompt + text + tok.sep_token)["input_ids"]) <= MAX_LENGTH  # noqa: E731
    pool = [c for p in pairs for c in (p.chosen, p.rejected)]
    rankings = []
    for p in pairs:
        borrowed = [c for c in rng.sample(pool, 12) if fits(p.prompt, c) and c not in (p.chosen, p.rejected)][:2]
        if len(borrowed) < 2:
            continue
        texts = [p.chosen, p.rejected, *borrowed]
        order = sorted(range(4), key=lambda i: (len(texts[i]), i))
        rankings.append(RankingExample(p.index, p.prompt, texts, [[i] for i in order]))
        if len(rankings) == n:
            break
    return rankings


def as_pairs(examples: list[RankingExample]) -> list[tuple[str, str, str]]:
    from data.rankings import ranking_to_pairs

    return [(e.prompt, e.completions[x.chosen], e.completions[x.rejected]) for e in examples for x in ranking_to_pairs(e.groups)]


def load_data(kind: str, fraction: float, quick: bool):
    tok = tokenizer()
    train, held_out = load_split()
    if quick:
        train, held_out = train[:200], held_out[:100]
    kept = kept_by_trl(train, tok)
    if kind == "human":
        train_examples = [RankingExample(p.index, p.prompt, [p.chosen, p.rejected], [[0], [1]]) for p in kept]
        train_examples = train_examples[: round(len(train_examples) * fraction)]
        held = [RankingExample(p.index, p.prompt, [p.chosen, p.rejected], [[0], [1]]) for p in held_out]
    else:
        train_examples = k4_rankings(kept, 40 if quick else 200, tok)
        held = k4_rankings(kept_by_trl(held_out, tok), 20 if quick else 100, tok, seed=1)
    return train_examples, held


def flops_estimate(examples, config: RewardConfig, kind: str) -> float:
    """Training FLOPs actually computed (padding included): 3 x forward, forward = 2 N_params T + 4 L d T^2 per sequence."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(resolve_backbone(EMBEDDED_ENCODER))
    d, layers = cfg.hidden_size, cfg.num_hidden_layers
    n_params = layers * (4 * d * d + 2 * d * cfg.intermediate_size)  # attention projections + MLP, no embeddings
    total = 0.0
    for e in range(config.epochs):
        for batch in make_batches(examples, tokenizer(), kind, config.max_length, config.batch_size, shuffle=True, seed=config.seed + e):
            n, t = batch.input_ids.shape
            total += 3 * n * (2 * n_params * t + 4 * layers * d * t * t)
    return total


def run_ours(kind: str, fraction: float, quick: bool) -> dict:
    from rm.train import fit

    train, held = load_data(kind, fraction, quick)
    config = RewardConfig(epochs=1, max_length=MAX_LENGTH, batch_size=16)
    _, _, metrics = fit(train, held, config)
    flops = flops_estimate(train, config, "encoder")
    n_pairs = len(as_pairs(train))
    return {"arm": "ours", "kind": kind, "fraction": fraction, "train_pairs": n_pairs, "train_rankings": len(train),
            "seconds": metrics["train/seconds"], "pairs_per_s": n_pairs / metrics["train/seconds"],
            "tokens_per_s": metrics["train/tokens_per_s"], "held_out_accuracy": metrics["val/accuracy"],
            "held_out_pairs": metrics["val/pairs"], "gflops_per_s": flops / metrics["train/seconds"] / 1e9,
            "peak_rss_mb": peak_rss_mb()}


def run_trl(kind: str, fraction: float, quick: bool) -> dict:
    from datasets import Dataset
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    train, held = load_data(kind, fraction, quick)
    pairs = as_pairs(train)
    tok = tokenizer()
    dataset = Dataset.from_dict({"prompt": [p for p, _, _ in pairs], "chosen": [c for _, c, _ in pairs],
                                 "rejected": [r for _, _, r in pairs]})
    with tempfile.TemporaryDirectory() as out:
        args = TRLRewardConfig(output_dir=out, num_train_epochs=1, max_length=MAX_LENGTH, eos_token=tok.sep_token,
                               report_to=[], save_strategy="no", seed=0, disable_tqdm=True,
                               use_cpu=not torch.cuda.is_available(), **trl_precision())
        trainer = RewardTrainer(model=resolve_backbone(EMBEDDED_ENCODER), args=args, train_dataset=dataset, processing_class=tok)
        kept = len(trainer.train_dataset)
        tokens = sum(len(x) + len(y) for x, y in zip(trainer.train_dataset["chosen_ids"], trainer.train_dataset["rejected_ids"]))
        output = trainer.train()
        seconds = output.metrics["train_runtime"]
        accuracy, n_held = trl_accuracy(trainer.model, tok, held)
    return {"arm": "trl", "kind": kind, "fraction": fraction, "train_pairs": kept, "seconds": seconds,
            "pairs_per_s": kept / seconds, "tokens_per_s": tokens / seconds, "held_out_accuracy": accuracy,
            "held_out_pairs": n_held, "peak_rss_mb": peak_rss_mb()}


@torch.no_grad()
def trl_accuracy(model, tok, held: list[RankingExample]) -> tuple[float, int]:
    """Score prompt + completion + [SEP] as TRL formats it, truncated at max_length; pairwise accuracy."""
    model.eval().float()
    pairs = as_pairs(held)
    agree = 0.0
    for start in range(0, len(pairs), 16):
        chunk = pairs[start:start + 16]
        texts = [p + c + tok.sep_token for p, c, _ in chunk] + [p + r + tok.sep_token for p, _, r in chunk]
        batch = tok(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        scores = model(**batch).logits.squeeze(-1)
        diff = scores[: len(chunk)] - scores[len(chunk):]
        agree += ((diff > 0).float() + 0.5 * (diff == 0).float()).sum().item()
    return agree / len(pairs), len(pairs)


def run_arm(arm: str, kind: str, fraction: float, quick: bool) -> dict:
    started = time.time()
    result = run_in_own_process("bench.reward_model", "--arm", arm, "--kind", kind, "--fraction", fraction,
                                *(["--quick"] if quick else []))
    print(f"{arm:>4} {kind:>5} {fraction:.2f}: {result['pairs_per_s']:.1f} pairs/s, accuracy {result['held_out_accuracy']:.3f} "
          f"({time.time() - started:.0f} s)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", choices=["ours", "trl"])
    parser.add_argument("--kind", choices=["human", "k4"], default="human")
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.arm:  # one arm, in its own process
        result = (run_ours if args.arm == "ours" else run_trl)(args.kind, args.fraction, args.quick)
        print(json.dumps(result))
        return
    results = {f"{arm}/{kind}": run_arm(arm, kind, 1.0, args.quick) for kind in ("human", "k4") for arm in ("trl", "ours")}
    scaling = [run_arm("ours", "human", f, args.quick) for f in (0.25, 0.5)] + [results["ours/human"]]
    ours, trl = results["ours/human"], results["trl/human"]
    summary = {
        "torch_threads": torch.get_num_threads(),
        "human_pairs": {"ours": ours, "trl": trl, "speedup_pairs_per_s": ours["pairs_per_s"] / trl["pairs_per_s"],
                        "accuracy_difference_points": 100 * (ours["held_out_accuracy"] - trl["held_out_accuracy"])},
        "k4_rankings": {"ours": results["ours/k4"], "trl": results["trl/k4"],
                        "speedup_pairs_per_s": results["ours/k4"]["pairs_per_s"] / results["trl/k4"]["pairs_per_s"]},
        "ours_share_of_bf16_peak": ours["gflops_per_s"] / BF16_PEAK_GFLOPS,
        "data_scaling": [{"fraction": r["fraction"], "train_pairs": r["train_pairs"],
                          "held_out_accuracy": r["held_out_accuracy"]} for r in scaling],
    }
    save("reward_model_quick" if args.quick else "reward_model", summary)


if __name__ == "__main__":
    main()
