"""Where the policy update's memory goes: resident memory after each phase of loading and of a few steps.

    python -m bench.policy_profile [--full] [--steps 4] [--long]

The bench.policy setup (embedded SmolLM2-135M, K=4, 4 prompts per step, 64 new tokens, the scripted reward), or
`--long` for 16 real HH-RLHF conversations per step (the prompts of bench.policy_memory). For each phase it reports
the resident set after it (RSS), the peak within it (Linux's VmHWM, reset before each phase through
/proc/self/clear_refs), and what malloc_trim gives back at the end (memory the allocator held but no tensor used).
"""

import argparse
import ctypes
import json
import time
from pathlib import Path

from bench.common import save

STATUS = Path("/proc/self/status")


def memory_mb() -> dict:
    fields = dict(line.split(":", 1) for line in STATUS.read_text().splitlines() if ":" in line)
    return {name: int(fields[key].split()[0]) / 1024 for name, key in (("rss", "VmRSS"), ("peak", "VmHWM"))}


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


class Phases:
    def __init__(self):
        self.rows, self.before = [], memory_mb()["rss"]
        reset_peak()

    def mark(self, name: str) -> None:
        now = memory_mb()
        self.rows.append({"phase": name, "rss_mb": round(now["rss"]), "peak_mb": round(now["peak"]),
                          "rss_growth_mb": round(now["rss"] - self.before)})
        print(f"{name:<42} RSS {now['rss']:7.0f} MB  peak within {now['peak']:7.0f} MB  ({now['rss'] - self.before:+.0f})",
              flush=True)
        self.before = now["rss"]
        reset_peak()


def long_prompts(n: int) -> list:
    import gzip

    from bench.hh import HH_FILE
    from data import conversation

    prompts = []
    for line in gzip.open(HH_FILE, "rt"):
        prompts.append(conversation.split_hh_dialogue(json.loads(line)["chosen"])[0])
        if len(prompts) == n:
            return prompts
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="full fine-tune instead of LoRA")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--long", action="store_true", help="real HH-RLHF conversations as prompts")
    args = parser.parse_args()

    phases = Phases()
    import torch
    import peft
    import transformers

    from bench.policy import K, NEW_TOKENS, PROMPTS_PER_STEP, ConciseReward, prompts
    from policy.config import PolicyConfig
    from policy.models import load_generator
    from policy.train import PolicyTrainer
    from training import EMBEDDED_GENERATOR
    from training.precision import load_dtype

    phases.mark(f"imports (torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__})")
    config = PolicyConfig(k=K, prompts_per_step=PROMPTS_PER_STEP, max_new_tokens=NEW_TOKENS, lora=not args.full,
                          learning_rate=1e-5 if args.full else 2e-4, eval_prompts=0)
    model, tokenizer = load_generator(EMBEDDED_GENERATOR, dtype=load_dtype(config, torch.device("cpu")))
    phases.mark(f"generator loaded ({next(model.parameters()).dtype})")
    trainer = PolicyTrainer(model, tokenizer, ConciseReward(), config)
    phases.mark("trainer: " + ("LoRA adapters + merged sampling copy" if config.lora else "reference copy"))
    train = long_prompts(64) if args.long else prompts()[0]
    for step in range(args.steps):
        batch = train[step * PROMPTS_PER_STEP:(step + 1) * PROMPTS_PER_STEP]
        started = time.perf_counter()
        torch.manual_seed(step)
        rollout = trainer.rollout(batch, seed=step)
        phases.mark(f"step {step + 1}: sampling ({rollout.sequences.shape[1]} columns)")
        ref = trainer.reference_logprobs(rollout)
        scores = trainer.scorer.score(rollout.prompts, rollout.texts)
        phases.mark(f"step {step + 1}: reference log-probs")
        metrics = trainer._reinforce_update(rollout, rollout.completion_mask.float(), ref, scores, {})
        phases.mark(f"step {step + 1}: forward, backward, optimizer step")
        del rollout, ref, scores, metrics
        print(f"  {time.perf_counter() - started:.1f} s", flush=True)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    phases.mark("after malloc_trim(0)")
    overall = max(row["peak_mb"] for row in phases.rows)
    save(f"policy_profile_{'full' if args.full else 'lora'}{'_long' if args.long else ''}",
         {"phases": phases.rows, "peak_mb": overall, "steps": args.steps})


if __name__ == "__main__":
    main()
