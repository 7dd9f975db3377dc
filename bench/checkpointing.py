"""Gradient checkpointing: memory and step time of SFT and DPO on the embedded generator, with and without it.

    python -m bench.checkpointing [--tokens 1024] [--steps 3]

Each arm runs in a process of its own (its peak RSS is its own): full weights (no LoRA, where activations weigh
most beside the weights and AdamW's moments), fp32, one batch of 4 sequences of `--tokens` tokens per step for SFT,
and one ranking of 4 completions of `--tokens` / 2 tokens after a short prompt per step for DPO. Reports the
median step time and the process's peak RSS. Results: bench/out/checkpointing.json.
"""

import argparse
import json
import sys
import time

from bench.common import median, peak_rss_mb, run_in_own_process, save

WORDS = "the quick brown fox jumps over the lazy dog while the sun sets slowly behind the hills".split()


def text(n_words: int, seed: int) -> str:
    return " ".join(WORDS[(i * 7 + seed) % len(WORDS)] for i in range(n_words))


def arm(trainer: str, on: bool, tokens: int, steps: int) -> dict:
    import torch

    from policy.config import DPOConfig, SFTConfig
    from policy.models import load_generator
    from training import EMBEDDED_GENERATOR
    from training.rankings import RankingExample

    torch.manual_seed(0)
    model, tokenizer = load_generator(EMBEDDED_GENERATOR)
    times = []
    on_step = lambda step, total, metrics: times.append(time.perf_counter())  # noqa: E731
    if trainer == "sft":
        from policy.sft import fit

        rows = [{"prompt": "Tell me a story.", "response": text(tokens, s)} for s in range(4 * steps)]
        fit(model, tokenizer, rows, rows[:1], SFTConfig(epochs=1, batch_size=4, lora=False, bf16=False, max_length=tokens,
                                                        gradient_checkpointing=on), on_step)
    else:
        from policy.dpo import fit

        rankings = [RankingExample(s, "Tell me a story.", [text(tokens // 2, s + j) for j in range(4)], [[0], [1], [2, 3]])
                    for s in range(steps + 1)]
        fit(model, tokenizer, rankings[:steps], rankings[steps:], DPOConfig(
            epochs=1, rankings_per_step=1, lora=False, bf16=False, eval_samples=0, max_length=tokens,
            gradient_checkpointing=on), on_step)
    step_times = [b - a for a, b in zip(times, times[1:])]
    return {"trainer": trainer, "checkpointing": on, "step_s": round(median(step_times), 2) if step_times else None,
            "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--arm", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm[0], args.arm[1] == "on", args.tokens, args.steps)))
        return
    rows = []
    for trainer in ("sft", "dpo"):
        for on in ("off", "on"):
            rows.append(run_in_own_process("bench.checkpointing", "--arm", trainer, on, "--tokens", args.tokens,
                                           "--steps", args.steps))
            print(rows[-1], file=sys.stderr, flush=True)
    save("checkpointing", {"tokens": args.tokens, "steps": args.steps, "arms": rows})


if __name__ == "__main__":
    main()
