"""Each trainer and the generation job at its default precision (`bf16=auto`) against fp32 and bf16, side by side.

    python -m bench.precision --repeats 3 --settings auto false      # the target: auto against fp32
    python -m bench.precision --repeats 1 --settings true --out precision_bf16   # what bf16 costs here (slow)

Issue 27's target: at its defaults each trainer is within 10% of its fp32 speed on a processor without native bf16,
and within 10% of its bf16 speed on one with it. Every (trainer, setting) arm runs in a process of its own, the
arms interleaved in each repeat so machine noise hits them alike; the figure is a median over the timed steps (the
first step, with its one-time costs, is left out where the trainer reports steps). Real embedded models, small
real data (the shared HH-RLHF comparisons, the built-in prompts):
- reward model: MiniLM on 64 human pairs, batch 16 (4 steps);
- SFT: SmolLM2 on 24 demonstrations, batch 8 (3 steps);
- policy update: RLOO with LoRA, 2 prompts x K=4, 32 new tokens (3 steps);
- DPO: LoRA, 12 pairs, 4 per step (3 steps);
- generation: the decode loop, 4 prompts x K=4, 32 new tokens (2 batches).
"""

import argparse
import json
import time

import torch

from bench.common import median, run_in_own_process, save
from training.precision import precision_for

TRAINERS = ("reward_model", "sft", "policy", "dpo", "generation")


def time_reward_model(setting: str) -> list[float]:
    from bench.hh import load_split
    from rm.config import RewardConfig
    from rm.train import fit
    from training.rankings import RankingExample

    train, held = load_split()
    short = [p for p in train if len(p.prompt + p.chosen + p.rejected) < 1500][:64]
    examples = [RankingExample(p.index, p.prompt, [p.chosen, p.rejected], [[0], [1]]) for p in short]
    validation = [RankingExample(p.index, p.prompt, [p.chosen, p.rejected], [[0], [1]]) for p in held[:4]]
    return _step_seconds(lambda on_step: fit(examples, validation, RewardConfig(epochs=1, batch_size=16, bf16=setting,
                                                                               max_length=256), on_step))


def time_sft(setting: str) -> list[float]:
    from bench.hh import load_split
    from policy.config import SFTConfig
    from policy.models import load_generator
    from policy.sft import fit
    from training import EMBEDDED_GENERATOR

    train, held = load_split()
    rows = lambda pairs: [{"prompt": p.prompt.strip()[-600:], "response": p.chosen.strip()[:400]} for p in pairs if p.chosen.strip()]  # noqa: E731
    model, tokenizer = load_generator(EMBEDDED_GENERATOR)
    config = SFTConfig(epochs=1, batch_size=8, max_length=256, bf16=setting)
    return _step_seconds(lambda on_step: fit(model, tokenizer, rows(train)[:24], rows(held)[:2], config, on_step))


def time_policy(setting: str) -> list[float]:
    from bench.policy import ConciseReward, prompts
    from policy.config import PolicyConfig
    from policy.models import load_generator
    from policy.train import fit
    from training import EMBEDDED_GENERATOR
    from training.precision import load_dtype

    config = PolicyConfig(steps=3, k=4, prompts_per_step=2, max_new_tokens=32, eval_prompts=0, bf16=setting)
    model, tokenizer = load_generator(EMBEDDED_GENERATOR, dtype=load_dtype(config, torch.device("cpu")))
    train, _ = prompts()
    history = []
    fit(model, tokenizer, ConciseReward(), train, [], config, lambda s, t, m: history.append(m["time/step"]))
    return history[1:]


def time_dpo(setting: str) -> list[float]:
    from bench.dpo import pairs
    from policy.config import DPOConfig
    from policy.dpo import fit
    from policy.models import load_generator
    from training import EMBEDDED_GENERATOR
    from training.precision import load_dtype

    config = DPOConfig(rankings_per_step=4, epochs=1, max_length=256, eval_samples=0, bf16=setting)
    model, tokenizer = load_generator(EMBEDDED_GENERATOR, dtype=load_dtype(config, torch.device("cpu")))
    train, validation = pairs(12, 1, tokenizer)
    return _step_seconds(lambda on_step: fit(model, tokenizer, train, validation, config, on_step))


def time_generation(setting: str) -> list[float]:
    from bench.policy import prompts
    from policy.generate import sample
    from policy.models import load_generator
    from training import EMBEDDED_GENERATOR
    from training.precision import use_bf16

    model, tokenizer = load_generator(EMBEDDED_GENERATOR)
    train, _ = prompts()
    bf16 = use_bf16(setting, model.device, model.config)
    seconds = []
    for batch in range(3):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            sample(model, tokenizer, train[batch * 4:batch * 4 + 4], 4, 0.8, 0.95, 32, batch)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def _step_seconds(run) -> list[float]:
    """Seconds between a trainer's step reports, the first (loading, warm-up) left out."""
    stamps = [time.perf_counter()]
    run(lambda step, total, metrics: stamps.append(time.perf_counter()) if "train/loss" in metrics else None)
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", help="TRAINER:SETTING, run in this process (what the driver starts)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=["auto", "false", "true"])
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    parser.add_argument("--out", default="precision", help="name of the result file in bench/out")
    args = parser.parse_args()
    if args.arm:
        trainer, setting = args.arm.split(":")
        seconds = globals()[f"time_{trainer}"](setting)
        print(json.dumps({"seconds": seconds, "precision": str(precision_for(setting, torch.device("cpu")))}))
        return
    runs = {(t, s): [] for t in args.trainers for s in args.settings}
    chosen = {}
    for repeat in range(args.repeats):
        for trainer in args.trainers:
            for setting in args.settings:
                result = run_in_own_process("bench.precision", "--arm", f"{trainer}:{setting}")
                runs[trainer, setting] += result["seconds"]
                chosen[trainer, setting] = result["precision"]
                print(f"repeat {repeat}: {trainer} bf16={setting}: median {median(result['seconds']):.2f} s/step "
                      f"({result['precision']})", flush=True)
    table = {t: {s: {"median_s_per_step": round(median(runs[t, s]), 3), "steps": len(runs[t, s]), "precision": chosen[t, s]}
                 for s in args.settings} for t in args.trainers}
    for t in args.trainers:
        if "auto" in args.settings and "false" in args.settings:
            table[t]["auto_over_fp32"] = round(table[t]["auto"]["median_s_per_step"] / table[t]["false"]["median_s_per_step"], 3)
        if "true" in args.settings and "false" in args.settings:
            table[t]["bf16_over_fp32"] = round(table[t]["true"]["median_s_per_step"] / table[t]["false"]["median_s_per_step"], 2)
    save(args.out, {"repeats": args.repeats, "trainers": table})


if __name__ == "__main__":
    main()
