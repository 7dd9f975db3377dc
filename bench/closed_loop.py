"""The whole loop on the real embedded models, with a scripted annotator.

    python -m bench.closed_loop [--prompts 32 --steps 20]

The embedded SmolLM2 writes K=4 completions for each built-in prompt; a scripted annotator who
prefers concise answers (about 20 words; every word off costs the same) ranks them, ties allowed;
a reward model (the shipped MiniLM) trains on those rankings; RLOO with LoRA updates the generator
against that reward model for 20 steps. On the 8 held-out prompts, the new generator's samples are
compared with the old one's (same prompts, same seed) under the scripted preference itself.
"""

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import peak_rss_mb, save
from bench.policy import concise
from data import annotation, builtin, items, jobs, versions
from data.rankings import ranks_to_groups
from data.store import open_db
from policy.config import GenerationConfig, PolicyConfig
from policy.generate import run_generation, sample
from policy.models import load_generator
from policy.train import run_policy_training
from rm.config import RewardConfig
from rm.train import run_reward_training


def as_job(db, db_path, kind, run, config) -> dict:
    job_id = jobs.create_job(db, kind, {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run(db, config, job))
    return jobs.get_job(db, job_id)["result"]


def scripted_rankings(db) -> int:
    """Rank every item by the scripted preference; equal scores tie."""
    me = annotation.annotator_id(db, "scripted")
    item_ids = [row[0] for row in db.execute("SELECT id FROM items")]
    for item_id in item_ids:
        completions = annotation.completions_of(db, item_id)
        scores = sorted({concise(c.text) for c in completions}, reverse=True)
        groups = ranks_to_groups({c.position: scores.index(concise(c.text)) for c in completions})
        annotation.submit_ranking(db, item_id, me, groups, list(range(len(completions))))
    return len(item_ids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    timings = {}
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "loop.db"
        db = open_db(db_path)
        builtin.init_db(db)
        db.execute("DELETE FROM completions"); db.execute("DELETE FROM items")  # noqa: E702  generate afresh
        started = time.perf_counter()
        as_job(db, db_path, "generate", run_generation, GenerationConfig(k=4, max_new_tokens=64))
        timings["generation_s"] = time.perf_counter() - started
        ranked = scripted_rankings(db)
        started = time.perf_counter()
        reward = as_job(db, db_path, "train_rm", run_reward_training, RewardConfig(epochs=3))
        timings["reward_model_s"] = time.perf_counter() - started
        started = time.perf_counter()
        policy = as_job(db, db_path, "train_policy", run_policy_training, PolicyConfig(steps=args.steps))
        timings["policy_s"] = time.perf_counter() - started
        held_out = [p["text"] for p in items.prompts_of_set(db, items.BUILTIN_SET)][-8:]
        texts = {}
        for name, version in (("before", versions.version_named(db, "generator", versions.EMBEDDED_GENERATOR_NAME)),
                              ("after", versions.get_version(db, policy["version"]))):
            model, tokenizer = load_generator(version["path"])
            per_prompt = sample(model, tokenizer, held_out, k=4, temperature=0.8, top_p=1.0, max_new_tokens=64, seed=7)
            texts[name] = [s.text for samples in per_prompt for s in samples]
    wins = [1.0 if concise(a) > concise(b) else 0.5 if concise(a) == concise(b) else 0.0 for a, b in zip(texts["after"], texts["before"])]
    words = lambda xs: sum(len(t.split()) for t in xs) / len(xs)  # noqa: E731
    save("closed_loop", {
        "rankings": ranked, "reward_model_val_accuracy": reward["val/accuracy"], "policy_steps": args.steps,
        "policy_eval_under_reward_model": {k: v for k, v in policy.items() if k.startswith("val/")},
        "held_out_scripted_win_rate": sum(wins) / len(wins),
        "held_out_mean_words_before": words(texts["before"]), "held_out_mean_words_after": words(texts["after"]),
        "held_out_scripted_score_before": sum(map(concise, texts["before"])) / len(wins),
        "held_out_scripted_score_after": sum(map(concise, texts["after"])) / len(wins),
        **{k: round(v, 1) for k, v in timings.items()}, "peak_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
