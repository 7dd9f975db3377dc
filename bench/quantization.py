"""Quantised bases under LoRA (QLoRA): memory and step time of SFT on the embedded generator with its base as
stored (fp32), in 8 bits and in 4 bits, on this CPU.

    python -m bench.quantization [--tokens 512] [--steps 4]

Each arm runs in a process of its own (its peak RSS is its own): LoRA r=16, fp32 compute, one batch of 4
sequences of `--tokens` tokens per step. Reports the median step time, the process's peak RSS and the bytes the
loaded model holds. Results: bench/out/quantization.json.
"""

import argparse
import json
import sys
import time

from bench.checkpointing import text
from bench.common import median, peak_rss_mb, run_in_own_process, save


def arm(quantize: str, tokens: int, steps: int) -> dict:
    import torch

    from policy.config import SFTConfig
    from policy.models import load_generator
    from policy.sft import fit
    from training import EMBEDDED_GENERATOR

    torch.manual_seed(0)
    model, tokenizer = load_generator(EMBEDDED_GENERATOR, quantize=quantize)
    held = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(b.numel() * b.element_size() for b in model.buffers())
    times = []
    rows = [{"prompt": "Tell me a story.", "response": text(tokens, s)} for s in range(4 * steps)]
    fit(model, tokenizer, rows, rows[:1], SFTConfig(epochs=1, batch_size=4, lora=True, bf16=False, max_length=tokens,
                                                    quantize=quantize),
        lambda step, total, metrics: times.append(time.perf_counter()))
    step_times = [b - a for a, b in zip(times, times[1:])]
    return {"quantize": quantize, "model_mb": round(held / 2**20), "step_s": round(median(step_times), 2) if step_times else None,
            "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm, args.tokens, args.steps)))
        return
    rows = []
    for quantize in ("none", "8bit", "4bit"):
        rows.append(run_in_own_process("bench.quantization", "--arm", quantize, "--tokens", args.tokens, "--steps", args.steps))
        print(rows[-1], file=sys.stderr, flush=True)
    save("quantization", {"tokens": args.tokens, "steps": args.steps, "arms": rows})


if __name__ == "__main__":
    main()
