"""The whole loop on the real embedded models, with a scripted annotator whose preference is not about length.

    python -m bench.closed_loop [--rankings 96] [--held-out 32] [--steps 20] [--dpo-epochs 3]
                                [--dpo-runs LR:BETA:KL_BUDGET ...] [--kl-coefs 0.05 ...] [--paths rloo grpo dpo]
                                [--preference reader]
                                [--out closed_loop]

128 everyday-advice prompts (8 question templates x 16 topics, shuffled) go into one prompt set; the embedded
SmolLM2 writes K=4 completions for each (64 new tokens, the generation job). A scripted annotator ranks the items of
the first `--rankings` prompts only, ties allowed; the last `--held-out` prompts are never ranked. Its preference,
`reader`, is an answer that speaks to the reader rather than about itself: ten times (second-person words minus
first-person-singular words) per word, a density that does not grow with length (`--preference concise` is the
old length preference, for comparison). From those same rankings:
- the reward model (the shipped MiniLM) trains, then RLOO (and GRPO) with LoRA update the generator against it;
- DPO with LoRA trains the starting generator on the rankings directly, once per `--dpo-runs` entry (learning rate,
  beta, KL budget; `inf`: no budget, the KL still checked and recorded; `default`: DPOConfig's), the sweep.
On the held-out prompts each new generator's samples are compared with the starting generator's (same prompts,
same seed, 4 samples each) under the scripted preference itself: the win rate, and the length-controlled win rate
(only new-old pairs whose lengths differ by at most 10% of the mean or 2 words; the policy update's own rule).
Issue 11's targets, for at least one path with at most 100 rankings: win rate >= 0.70, length-controlled >= 0.60.
"""

import argparse
import random
import re
import tempfile
import time
from pathlib import Path

from bench.common import peak_rss_mb, save
from bench.policy import concise
from data import annotation, builtin, items, jobs, versions
from data.rankings import ranks_to_groups
from data.store import open_db
from policy.config import DPOConfig, GenerationConfig, PolicyConfig
from policy import dpo as policy_dpo, train as policy_train
from policy.generate import run_generation, sample
from policy.models import load_generator
from rm.config import RewardConfig
from rm import train as rm_train
from training.diagnostics import length_controlled_win_rate

PROMPT_SET = "loop"
TOPICS = ["learning a new language", "saving money", "running", "keeping houseplants", "cooking for one",
          "sleeping better", "working from home", "job interviews", "reading more books", "moving to a new city",
          "making friends as an adult", "learning to draw", "organising a small kitchen", "writing a cover letter",
          "studying for exams", "planning a weekend trip"]
TEMPLATES = ["Give me advice on {t}.", "What should a beginner know about {t}?", "I'm struggling with {t}. Any tips?",
             "What are the first steps in {t}?", "What is the hardest part of {t}, and how can I deal with it?",
             "How much time per week should I spend on {t}?", "What are common mistakes in {t}?",
             "Is {t} worth the effort? Give me an honest answer."]
SECOND_PERSON = re.compile(r"\b(you|your|yours|yourself|you're|you've|you'll|you'd)\b", re.IGNORECASE)
FIRST_PERSON = re.compile(r"\b(i|me|my|mine|myself|i'm|i've|i'll|i'd)\b", re.IGNORECASE)


def reader(text: str) -> float:
    """The scripted preference: speak to the reader, not about yourself. Per word, so length alone does not pay."""
    words = max(1, len(text.split()))
    return 10 * (len(SECOND_PERSON.findall(text)) - len(FIRST_PERSON.findall(text))) / words


PREFERENCES = {"reader": reader, "concise": concise}


def loop_prompts() -> list[str]:
    prompts = [template.format(t=topic) for topic in TOPICS for template in TEMPLATES]
    random.Random(0).shuffle(prompts)
    return prompts


def as_job(db, db_path, kind, run, config) -> dict:
    job_id = jobs.create_job(db, kind, {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run(db, config, job))
    return jobs.get_job(db, job_id)["result"]


def scripted_rankings(db, prompt_ids: list[int], preference) -> int:
    """Rank the items of these prompts by the scripted preference (rounded to 2 decimals: equal scores tie)."""
    me = annotation.annotator_id(db, "scripted")
    item_ids = [row[0] for row in db.execute(
        f"SELECT id FROM items WHERE prompt_id IN ({','.join('?' * len(prompt_ids))}) ORDER BY id", prompt_ids)]
    for item_id in item_ids:
        completions = annotation.completions_of(db, item_id)
        score = {c.position: round(preference(c.text), 2) for c in completions}
        levels = sorted(set(score.values()), reverse=True)
        groups = ranks_to_groups({p: levels.index(s) for p, s in score.items()})
        annotation.submit_ranking(db, item_id, me, groups, list(range(len(completions))))
    return len(item_ids)


def held_out_comparison(db, version_ids: dict[str, int], prompts: list[str], preference) -> dict:
    """Each version's samples on the held-out prompts against the starting generator's, under the scripted preference."""
    texts = {}
    for name, version_id in version_ids.items():
        model, tokenizer = load_generator(versions.get_version(db, version_id)["path"])
        per_prompt = sample(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts], k=4, temperature=0.8,
                            top_p=1.0, max_new_tokens=64, seed=7)
        texts[name] = [s.text for samples in per_prompt for s in samples]
        del model
    words = lambda xs: [len(t.split()) for t in xs]  # noqa: E731
    before = texts.pop("before")
    report = {"before": {"preference": mean(map(preference, before)), "words": mean(words(before))}}
    for name, after in texts.items():
        gain = [preference(a) - preference(b) for a, b in zip(after, before)]
        length_gain = [a - b for a, b in zip(words(after), words(before))]
        tolerance = max(2.0, 0.1 * mean(words(after) + words(before)))
        lc, lc_pairs = length_controlled_win_rate(gain, length_gain, tolerance)
        report[name] = {"preference": mean(map(preference, after)), "words": mean(words(after)),
                        "win_rate": mean([1.0 if g > 0 else 0.5 if g == 0 else 0.0 for g in gain]),
                        "lc_win_rate": lc, "lc_pairs": lc_pairs, "pairs": len(gain),
                        "examples": [{"before": b, "after": a} for a, b in list(zip(after, before))[:3]]}
    return report


def dpo_settings(spec: str) -> dict:
    """'5e-4:0.1:5' -> learning rate, beta and KL budget of one DPO run; 'default': DPOConfig's."""
    if spec == "default":
        return {}
    learning_rate, beta, budget = (float(x) for x in spec.split(":"))
    return {"learning_rate": learning_rate, "beta": beta, "kl_budget": budget}


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rankings", type=int, default=96, help="prompts whose item the script ranks (one ranking each)")
    parser.add_argument("--held-out", type=int, default=32, help="prompts never ranked, for the before/after comparison")
    parser.add_argument("--steps", type=int, default=20, help="RLOO steps")
    parser.add_argument("--dpo-epochs", type=int, default=3)
    parser.add_argument("--dpo-runs", nargs="+", default=["default"],
                        help="DPO runs as learning_rate:beta:kl_budget (inf: checked, never stops), or default")
    parser.add_argument("--paths", nargs="+", choices=["rloo", "grpo", "dpo"], default=["rloo", "dpo"])
    parser.add_argument("--kl-coefs", nargs="+", type=float, default=[PolicyConfig.kl_coef],
                        help="the policy update's beta (KL coefficient), one run of each path per value")
    parser.add_argument("--preference", choices=sorted(PREFERENCES), default="reader")
    parser.add_argument("--out", default="closed_loop", help="result file name under bench/out/")
    args = parser.parse_args()
    preference = PREFERENCES[args.preference]
    prompts = loop_prompts()[:args.rankings + args.held_out]
    timings = {}
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "loop.db"
        db = open_db(db_path)
        builtin.init_db(db)
        items.ensure_prompt_set(db, PROMPT_SET)
        prompt_ids = [items.add_prompt(db, PROMPT_SET, p, source="bench")[0] for p in prompts]
        start = versions.active_version(db, "generator")["id"]

        def timed(name, kind, run, config):
            started = time.perf_counter()
            result = as_job(db, db_path, kind, run, config)
            timings[f"{name}_s"] = round(time.perf_counter() - started, 1)
            print(f"{name}: {timings[f'{name}_s']} s · {result}", flush=True)
            return result

        timed("generation", "generate", run_generation, GenerationConfig(prompt_set=PROMPT_SET, k=4, max_new_tokens=64))
        ranked = scripted_rankings(db, prompt_ids[:args.rankings], preference)
        reward = timed("reward_model", "train_rm", rm_train.run_job,
                       RewardConfig(prompt_sets=PROMPT_SET, epochs=3, name="rm-loop"))
        versions.set_active(db, reward["version"], by="bench")  # the policy update's reward, DPO's evaluation's judge
        results = {}
        for algorithm in ("rloo", "grpo"):
            for kl_coef in (args.kl_coefs if algorithm in args.paths else []):
                name = algorithm if kl_coef == PolicyConfig.kl_coef else f"{algorithm}-kl{kl_coef:g}"
                results[name] = timed(name, "train_policy", policy_train.run_job, PolicyConfig(
                    prompt_set=PROMPT_SET, generator_version=start, eval_prompts=args.held_out, steps=args.steps,
                    algorithm=algorithm, kl_coef=kl_coef, name=f"{name}-loop"))
        if "dpo" in args.paths:
            for spec in args.dpo_runs:
                settings = dpo_settings(spec)
                name = "dpo" if spec == "default" else "dpo-" + "-".join(f"{v:g}" for v in settings.values())
                results[name] = timed(name, "dpo", policy_dpo.run_job, DPOConfig(
                    generator_version=start, prompt_sets=PROMPT_SET, epochs=args.dpo_epochs, name=f"{name}-loop", **settings))
        started = time.perf_counter()
        comparison = held_out_comparison(db, {"before": start, **{name: r["version"] for name, r in results.items()}},
                                         prompts[args.rankings:], preference)
        timings["held_out_sampling_s"] = round(time.perf_counter() - started, 1)
    for name in results:
        r = comparison[name]
        print(f"{name}: win rate {r['win_rate']:.2f}, length-controlled {r['lc_win_rate']} on {r['lc_pairs']} pairs; "
              f"{args.preference} {comparison['before']['preference']:.2f} -> {r['preference']:.2f}; "
              f"words {comparison['before']['words']:.1f} -> {r['words']:.1f}")
    save(args.out, {
        "preference": args.preference, "rankings": ranked, "held_out_prompts": args.held_out,
        "reward_model": {k: reward.get(k) for k in ("val/accuracy", "val/loss")}, "rloo_steps": args.steps,
        "dpo_epochs": args.dpo_epochs, "dpo_runs": args.dpo_runs,
        **{f"{name}_eval": {k: v for k, v in r.items() if k.startswith(("val/", "kl_budget/"))} for name, r in results.items()},
        "held_out_scripted": comparison, **timings, "peak_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
