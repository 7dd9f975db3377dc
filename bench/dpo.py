"""DPO of the embedded SmolLM2-135M on real human comparisons: this project's DPO against TRL's DPOTrainer.

    python -m bench.dpo [--train 256 --validation 128]

Same pairs (the shared HH-RLHF comparisons: the dialogue so far as a conversation, the two last assistant turns
as chosen and rejected, only pairs whose chats fit in 256 tokens, so neither arm truncates), same model, same
LoRA (r 16, alpha 32, the attention and MLP projections), same beta (0.1), learning rate (5e-5), 8 pairs per step,
1 epoch, bf16. TRL at its defaults otherwise (gradient checkpointing on, the prompt run once per completion);
ours at its defaults (each pair's prompt run once for both completions, no checkpointing). Speed is the pairs'
tokens (prompt + chosen and prompt + rejected, the same count for both arms) over the training time; held-out
accuracy is the share of held-out pairs whose implicit reward (the log-ratio to the starting model) prefers the
human choice, measured by the same function for both. Each arm runs in its own process (peak RSS is its own).
"""

import argparse
import json
import tempfile
import time

import torch

from bench.common import peak_rss_mb, run_in_own_process, save, trl_precision
from bench.hh import load_split
from data import conversation
from policy.config import DPOConfig
from policy.dpo import encode_ranking, sequence_logprobs
from policy.models import load_generator
from policy.sft import encode_demonstration
from training import EMBEDDED_GENERATOR, resolve_model_path
from training.rankings import RankingExample

MAX_LENGTH, PAIRS_PER_STEP, BETA, LEARNING_RATE, LORA_RANK = 256, 8, 0.1, 5e-5, 16


def pairs(n_train: int, n_validation: int, tokenizer) -> tuple[list[RankingExample], list[RankingExample]]:
    """HH comparisons as two-completion rankings (chosen first), only those whose chats fit in MAX_LENGTH."""
    def convert(split, n):
        out = []
        for p in split:
            try:
                messages = conversation.parse_hh_transcript(p.prompt)  # the final "Assistant:" cue dropped
            except conversation.BadConversation:
                continue
            chosen, rejected = p.chosen.strip(), p.rejected.strip()
            if not chosen or not rejected or chosen == rejected or not messages or messages[-1]["role"] != "user":
                continue
            if max(len(encode_demonstration(tokenizer, messages, c, 10_000)[0]) for c in (chosen, rejected)) > MAX_LENGTH:
                continue
            out.append(RankingExample(p.index, conversation.transcript(messages), [chosen, rejected], [[0], [1]], messages))
            if len(out) == n:
                break
        return out

    train, held_out = load_split()
    return convert(train, n_train), convert(held_out, n_validation)


def pair_tokens(examples: list[RankingExample], tokenizer) -> int:
    return sum(len(encode_demonstration(tokenizer, e.messages, c, MAX_LENGTH)[0]) for e in examples for c in e.completions)


@torch.no_grad()
def held_out_accuracy(policy, tokenizer, validation: list[RankingExample]) -> float:
    """Share of held-out pairs whose implicit reward (log pi/ref of chosen minus rejected) is above 0; the reference
    is the same model with its LoRA adapter switched off. fp32, the same function for both arms."""
    policy = policy.float().eval()
    wins = 0.0
    for example in validation:
        ranking = encode_ranking(tokenizer, example, MAX_LENGTH)
        logp = sequence_logprobs(policy, ranking)  # [2]
        with policy.disable_adapter():
            ref = sequence_logprobs(policy, ranking)  # [2]
        h = (logp[0] - ref[0]) - (logp[1] - ref[1])
        wins += 1.0 if h > 0 else 0.5 if h == 0 else 0.0
    return wins / len(validation)


def run_ours(n_train: int, n_validation: int) -> dict:
    from policy.dpo import fit

    from training.precision import load_dtype

    config = DPOConfig(beta=BETA, learning_rate=LEARNING_RATE, rankings_per_step=PAIRS_PER_STEP, epochs=1, lora=True,
                       lora_rank=LORA_RANK, max_length=MAX_LENGTH, eval_samples=0)
    model, tokenizer = load_generator(EMBEDDED_GENERATOR, dtype=load_dtype(config, torch.device("cpu")))
    train, validation = pairs(n_train, n_validation, tokenizer)
    started = time.perf_counter()
    trainer, metrics = fit(model, tokenizer, train, validation[:1], config)
    seconds = time.perf_counter() - started  # includes two one-ranking evaluations: a few hundred ms
    return {"arm": "ours", "train_pairs": len(train), "validation_pairs": len(validation),
            "pair_tokens_per_s": pair_tokens(train, tokenizer) / seconds, "seconds": seconds,
            "held_out_accuracy": held_out_accuracy(trainer.policy, tokenizer, validation), "peak_rss_mb": peak_rss_mb()}


def run_trl(n_train: int, n_validation: int) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    folder = resolve_model_path(EMBEDDED_GENERATOR)
    _, tokenizer = load_generator(EMBEDDED_GENERATOR)
    train, validation = pairs(n_train, n_validation, tokenizer)
    dataset = Dataset.from_dict({"prompt": [e.messages for e in train],
                                 "chosen": [[{"role": "assistant", "content": e.completions[0]}] for e in train],
                                 "rejected": [[{"role": "assistant", "content": e.completions[1]}] for e in train]})
    # the layers ours adapts (policy.models.with_lora_adapter)
    lora = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as out:
        args = TRLDPOConfig(output_dir=out, beta=BETA, learning_rate=LEARNING_RATE, per_device_train_batch_size=PAIRS_PER_STEP,
                            num_train_epochs=1, max_length=MAX_LENGTH, report_to=[], save_strategy="no", seed=0,
                            disable_tqdm=True, logging_steps=1, use_cpu=not torch.cuda.is_available(),
                            **trl_precision())
        trainer = DPOTrainer(model=folder, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
        output = trainer.train()
        seconds = output.metrics["train_runtime"]
        accuracy = held_out_accuracy(trainer.model, tokenizer, validation)
    return {"arm": "trl", "train_pairs": len(train), "validation_pairs": len(validation),
            "pair_tokens_per_s": pair_tokens(train, tokenizer) / seconds, "seconds": seconds,
            "held_out_accuracy": accuracy, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", choices=["ours", "trl"])
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--validation", type=int, default=128)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps((run_ours if args.arm == "ours" else run_trl)(args.train, args.validation)))
        return
    results = {}
    for arm in ("trl", "ours"):
        results[arm] = run_in_own_process("bench.dpo", "--arm", arm, "--train", args.train, "--validation", args.validation)
        print(f"{arm}: {results[arm]['pair_tokens_per_s']:.0f} tokens/s, held-out accuracy {results[arm]['held_out_accuracy']:.3f}",
              flush=True)
    save("dpo", {**results, "speedup": results["ours"]["pair_tokens_per_s"] / results["trl"]["pair_tokens_per_s"],
                 "accuracy_difference": results["ours"]["held_out_accuracy"] - results["trl"]["held_out_accuracy"]})


if __name__ == "__main__":
    main()
