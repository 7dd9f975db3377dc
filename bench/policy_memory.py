"""Peak memory of the policy update on long prompts: `python -m policy.train` (LoRA, defaults) in a process of its own.

    python -m bench.policy_memory [--steps 5] [--prompts 96] [--label NAME] [--code CHECKOUT]

`--code` runs the trainer of another checkout (`git worktree add /tmp/base COMMIT`): a before/after on one store.

The prompts are real conversations from the shared HH-RLHF file (each dialogue up to its last human turn,
continued through the chat template), so they run from a few tokens to several hundred. The reward model
has the embedded MiniLM backbone with an untrained head: memory and time do not depend on its weights.
Reports the process's peak RSS, the prompt lengths, and the median seconds per step.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import save


def prepared_store(path: Path, n_prompts: int) -> dict:
    import gzip

    from bench.hh import HH_FILE
    from data import builtin, conversation, items, versions
    from data.store import open_db
    from policy.models import load_generator
    from policy.generate import chat_inputs
    from rm.config import RewardConfig
    from rm.model import new_reward_model, save_reward_model
    from training import EMBEDDED_GENERATOR

    db = open_db(path)
    builtin.init_db(db)
    items.ensure_prompt_set(db, "hh")
    prompts = []
    for line in gzip.open(HH_FILE, "rt"):
        messages, _ = conversation.split_hh_dialogue(json.loads(line)["chosen"])
        if items.add_prompt(db, "hh", messages)[1]:
            prompts.append(messages)
        if len(prompts) == n_prompts:
            break
    db.conn.commit()
    model, tokenizer = new_reward_model(RewardConfig())
    folder = path.parent / "rm"
    save_reward_model(model, tokenizer, RewardConfig(), {}, folder, {"train": [], "validation": []})
    versions.register_version(db, "reward", "untrained-minilm", str(folder), activate=True)
    _, generator_tokenizer = load_generator(EMBEDDED_GENERATOR)
    lengths = chat_inputs(generator_tokenizer, prompts)["attention_mask"].sum(1).tolist()
    return {"prompts": len(prompts), "prompt_tokens_median": statistics.median(lengths), "prompt_tokens_max": max(lengths)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--label", default="current")
    parser.add_argument("--code", default=".", help="the checkout whose policy.train runs")
    parser.add_argument("--train-args", default="", help="more flags for policy.train, e.g. '--micro-batch-prompts 1'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        result = prepared_store(path, args.prompts)
        command = [sys.executable, "-m", "policy.train", "--db", str(path), "--prompt-set", "hh", "--steps", str(args.steps),
                   "--eval-prompts", "8", "--name", "bench-policy", *args.train_args.split()]
        done = subprocess.run(command, capture_output=True, text=True, cwd=args.code)
        if done.returncode:
            sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
        from data import jobs
        from data.store import open_db

        db = open_db(path)
        [job] = [j for j in jobs.list_jobs(db) if j["kind"] == "train_policy"]
        step_times = [m["time/step"] for m in jobs.job_metrics(db, job["id"]) if "time/step" in m]
        result.update({"steps": args.steps, "train_args": args.train_args, "seconds_per_step_median": round(statistics.median(step_times), 2),
                       "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)})
    print(json.dumps(result))
    save(f"policy_memory_{args.label}", result)


if __name__ == "__main__":
    main()
