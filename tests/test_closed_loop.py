"""The whole loop on tiny models: generate, a scripted annotator ranks, a reward model learns, the policy moves.

The scripted annotator prefers shorter completions. After one round the new generator must
satisfy that preference clearly better than the old one on held-out prompts: it wins at least
70% of paired comparisons (same prompt, same sampling seed) and its mean length drops by at least 20%.
"""

import pytest

from data import items, jobs, versions
from policy.config import GenerationConfig, PolicyConfig
from policy.generate import run_generation, sample
from policy.models import load_generator
from policy import train as policy_train
from rm.config import RewardConfig
from rm import train as rm_train
from tests.conftest import rank_by
from tests.tiny import CORPUS

TRAIN_PROMPTS = [f"{w} {v}" for w in ("why", "how", "what", "explain") for v in ("rain", "the sky", "a poem", "short answers")]
HELD_OUT = ["write a poem about rain", "why is it blue", "explain the answer", "what is a long answer"]


def as_job(db, db_path, kind, run, config):
    job_id = jobs.create_job(db, kind, {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run(db, config, job))
    job = jobs.get_job(db, job_id)
    assert job["status"] == "done", job["error"]
    return job["result"]


def shorter_wins(new: list[str], old: list[str]) -> float:
    return sum(1.0 if len(n) < len(o) else 0.5 if len(n) == len(o) else 0.0 for n, o in zip(new, old)) / len(new)


@pytest.mark.slow
def test_one_round_of_the_loop_moves_the_generator_towards_the_annotators_preference(db, db_path, tiny_small_vocab_generator, tiny_encoder):
    assert all(ch in "".join(CORPUS) for p in TRAIN_PROMPTS + HELD_OUT for ch in p)
    items.ensure_prompt_set(db, "loop")
    for prompt in TRAIN_PROMPTS + HELD_OUT:  # the last 4 are held out by the policy update
        items.add_prompt(db, "loop", prompt)
    old = versions.register_version(db, "generator", "tiny", tiny_small_vocab_generator, activate=True)

    as_job(db, db_path, "generate", run_generation,
           GenerationConfig(prompt_set="loop", k=6, max_new_tokens=24, temperature=1.0, top_p=1.0))
    ranked = [i["id"] for i in db.query("SELECT id FROM items")]
    rank_by(db, ranked, lambda text: -len(text))

    reward = as_job(db, db_path, "train_rm", rm_train.run_job,
                    RewardConfig(backbone=tiny_encoder, epochs=8, learning_rate=3e-3, batch_size=24, bf16=False, seed=1))
    assert reward["val/accuracy"] > 0.7

    policy = as_job(db, db_path, "train_policy", policy_train.run_job,
                    PolicyConfig(prompt_set="loop", eval_prompts=4, k=4, prompts_per_step=4, steps=40, learning_rate=3e-3,
                                 kl_coef=0.01, max_new_tokens=24, temperature=1.0, lora=False, bf16=False,
                                 reward_version=reward["version"]))
    new = versions.get_version(db, policy["version"])
    assert new["parent_id"] == old

    before = _samples(versions.get_version(db, old)["path"])
    after = _samples(new["path"])
    print(f"reward model accuracy {reward['val/accuracy']:.2f}, win rate {shorter_wins(after, before):.2f}, "
          f"length {sum(map(len, before)) / len(before):.1f} -> {sum(map(len, after)) / len(after):.1f} characters")
    assert shorter_wins(after, before) >= 0.7
    assert sum(map(len, after)) <= 0.8 * sum(map(len, before))


def _samples(path: str) -> list[str]:
    model, tokenizer = load_generator(path)
    per_prompt = sample(model, tokenizer, HELD_OUT, k=8, temperature=1.0, top_p=1.0, max_new_tokens=24, seed=123)
    return [s.text for samples in per_prompt for s in samples]
