"""Policy update on the embedded SmolLM2-135M: this project's RLOO against TRL's RLOOTrainer, side by side.

    python -m bench.policy [--steps 10] [--model PATH]
    python -m bench.policy --algorithm grpo --arms trl,ours-lora     # or dr_grpo: against TRL's GRPOTrainer

With --algorithm grpo or dr_grpo, TRL's arm is GRPOTrainer with loss_type and scale_rewards set to that algorithm
(group std for grpo, none for dr_grpo) and beta 0.05 like ours; the rest as below.

Same reward (a scripted preference for concise answers, used directly as the reward by both),
same K=4 samples per prompt, 4 prompts per step, 64 new tokens, same number of steps. TRL runs at
its defaults otherwise (bf16 autocast, gradient checkpointing, learning rate 1e-6, beta 0.05);
ours at its defaults (LoRA, learning rate 2e-4, beta 0.05), and once as a full fine-tune (lr 1e-5).
Each arm runs in its own process, so peak RSS is its own. After training, both arms are evaluated
the same way: 4 samples for each of 8 held-out prompts from the trained and the starting model
(same seed), scored by the same reward.
"""

import argparse
import json
import tempfile
import time

import torch

from bench.common import peak_rss_mb, run_in_own_process, save, trl_precision
from data.builtin import PROMPTS_FILE
from data.importing import parse_prompts
from policy.config import PolicyConfig
from policy.models import load_generator
from training import EMBEDDED_GENERATOR, pick_device, resolve_model_path
from training.precision import use_bf16

K, PROMPTS_PER_STEP, NEW_TOKENS, HELD_OUT = 4, 4, 64, 8
ARMS = ["trl", "ours-lora", "ours-full"]


def concise(text: str) -> float:
    """The scripted preference: answers of about 20 words are best; every word off costs 0.1."""
    return -abs(len(text.split()) - 20) / 10


class ConciseReward:
    def score(self, prompts, completions):
        return torch.tensor([concise(c) for c in completions])


def prompts() -> tuple[list[str], list[str]]:
    texts = [row.text for row in parse_prompts(PROMPTS_FILE.read_bytes(), "jsonl")]
    return texts[:-HELD_OUT], texts[-HELD_OUT:]


@torch.no_grad()
def held_out_eval(model, start_model, tokenizer, temperature: float) -> dict:
    from policy.rollout import sample_rollout

    _, held = prompts()
    rewards = {}
    for name, m in (("after", model), ("before", start_model)):
        torch.manual_seed(1234)
        with torch.autocast(m.device.type, dtype=torch.bfloat16, enabled=use_bf16("auto", m.device)):
            rollout = sample_rollout(m, tokenizer, held, K, NEW_TOKENS, temperature)
        rewards[name] = torch.tensor([concise(t) for t in rollout.texts])
    diff = rewards["after"] - rewards["before"]
    return {"held_out_reward_before": rewards["before"].mean().item(), "held_out_reward_after": rewards["after"].mean().item(),
            "held_out_win_rate": ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()}


def run_ours(steps: int, lora: bool, model_path: str, algorithm: str = "rloo") -> dict:
    from policy.train import fit

    train, _ = prompts()
    config = PolicyConfig(algorithm=algorithm, steps=steps, k=K, prompts_per_step=PROMPTS_PER_STEP, max_new_tokens=NEW_TOKENS, lora=lora,
                          learning_rate=2e-4 if lora else 1e-5, eval_prompts=0)
    from training.precision import load_dtype

    model, tokenizer = load_generator(model_path, dtype=load_dtype(config, pick_device()))
    history = []
    started = time.perf_counter()
    trainer, _ = fit(model, tokenizer, ConciseReward(), train, [], config, lambda s, t, m: history.append(m))
    seconds = time.perf_counter() - started
    start_model, _ = load_generator(model_path)
    evaluation = held_out_eval(trainer.sampling_model() if lora else trainer.policy, start_model, tokenizer, config.temperature)
    per_step = lambda key: sorted(h[key] for h in history)[len(history) // 2]  # noqa: E731
    return {"arm": f"ours-{'lora' if lora else 'full'}", "algorithm": algorithm, "steps": steps, "seconds_per_step": seconds / steps,
            "median_split_s": {k: round(per_step(f"time/{k}"), 2) for k in ("generation", "scoring", "forward", "backward")},
            "completion_tokens_per_s": sum(h["policy/length"] * K * PROMPTS_PER_STEP for h in history) / seconds,
            "reward_first_3": sum(h["reward/mean"] for h in history[:3]) / 3, "reward_last_3": sum(h["reward/mean"] for h in history[-3:]) / 3,
            "reward_curve": [round(h["reward/mean"], 3) for h in history], "kl_last": history[-1]["policy/kl"],
            **evaluation, **peak_memory()}


def peak_memory() -> dict:
    gpu = {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}
    return {"peak_rss_mb": peak_rss_mb(), **gpu}


def trl_trainer(algorithm: str):
    """TRL's trainer and config for the algorithm: RLOOTrainer for rloo, GRPOTrainer set to GRPO's or Dr. GRPO's loss."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    if algorithm == "rloo":
        return RLOOTrainer, RLOOConfig, {}
    return GRPOTrainer, GRPOConfig, {"loss_type": algorithm, "scale_rewards": "group" if algorithm == "grpo" else "none",
                                     "beta": 0.05}


def run_trl(steps: int, model_path: str, algorithm: str = "rloo") -> dict:
    from datasets import Dataset

    train, _ = prompts()
    folder = resolve_model_path(model_path)

    def concise_reward(prompts, completions, **_):
        return [concise(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in train]})
    with tempfile.TemporaryDirectory() as out:
        Trainer, Config, settings = trl_trainer(algorithm)
        args = Config(output_dir=out, per_device_train_batch_size=K * PROMPTS_PER_STEP, num_generations=K,
                      max_completion_length=NEW_TOKENS, max_steps=steps, report_to=[], logging_steps=1,
                      save_strategy="no", seed=0, disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                      **trl_precision(), **settings)
        trainer = Trainer(model=folder, reward_funcs=[concise_reward], args=args, train_dataset=dataset)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        logs = [h for h in trainer.state.log_history if "reward" in h]
        model = trainer.model
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.padding_side = "left"
        start_model, _ = load_generator(model_path)
        evaluation = held_out_eval(model.float().eval(), start_model, tokenizer, args.temperature)
    return {"arm": "trl", "algorithm": algorithm, "steps": steps, "seconds_per_step": seconds / steps,
            "completion_tokens_per_s": sum(h.get("completions/mean_length", 0) * K * PROMPTS_PER_STEP for h in logs) / seconds,
            "reward_first_3": sum(h["reward"] for h in logs[:3]) / 3, "reward_last_3": sum(h["reward"] for h in logs[-3:]) / 3,
            "reward_curve": [round(h["reward"], 3) for h in logs], "kl_last": logs[-1].get("kl"),
            **evaluation, **peak_memory()}


def run_arm(arm: str, steps: int, model_path: str, algorithm: str) -> dict:
    result = run_in_own_process("bench.policy", "--arm", arm, "--steps", steps, "--model", model_path, "--algorithm", algorithm)
    print(f"{arm}: {result['seconds_per_step']:.1f} s/step, reward {result['reward_first_3']:.2f} -> {result['reward_last_3']:.2f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", choices=ARMS)
    parser.add_argument("--arms", default=",".join(ARMS), help="the arms to run side by side, comma-separated")
    parser.add_argument("--algorithm", default="rloo", choices=["rloo", "grpo", "dr_grpo"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model", default=EMBEDDED_GENERATOR, help="the generator both arms start from (default: the embedded one)")
    parser.add_argument("--out", default="", help="name of the result file in bench/out (default: policy, or policy_<algorithm>)")
    args = parser.parse_args()
    if args.arm:
        result = (run_trl(args.steps, args.model, args.algorithm) if args.arm == "trl"
                  else run_ours(args.steps, args.arm == "ours-lora", args.model, args.algorithm))
        print(json.dumps(result))
        return
    results = {arm: run_arm(arm, args.steps, args.model, args.algorithm) for arm in args.arms.split(",")}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    ratios = {f"seconds_per_step_ratio_{arm[5:]}_vs_trl": results[arm]["seconds_per_step"] / results["trl"]["seconds_per_step"]
              for arm in results if arm != "trl" and "trl" in results}
    save(args.out or ("policy" if args.algorithm == "rloo" else f"policy_{args.algorithm}"),
         {"device": device, "model": args.model, "algorithm": args.algorithm,
          **{arm.replace("-", "_"): result for arm, result in results.items()}, **ratios})


if __name__ == "__main__":
    main()
