"""Supervised fine-tuning of the embedded SmolLM2-135M: this project's SFT against TRL's SFTTrainer.

    python -m bench.sft [--train 128 --validation 48]

Same demonstrations (the chosen answers of the shared HH-RLHF comparisons; the dialogue so far is
the prompt), same epochs (1), same max length (256 tokens), same batch size (8); each arm at its own
defaults otherwise (TRL: lr 2e-5, bf16, gradient checkpointing, completion-only loss; ours: lr 5e-5,
bf16 autocast, logits only on response tokens). Both arms' validation loss is measured by the same
function on the same held-out demonstrations. Each arm runs in its own process.
"""

import argparse
import json
import tempfile
import time

import torch

from bench.common import peak_rss_mb, run_in_own_process, save, trl_precision
from bench.hh import load_split
from policy.config import SFTConfig
from policy.models import load_generator
from training import EMBEDDED_GENERATOR, resolve_model_path
from policy.sft import encode_demonstration, fit, make_batches, validation_loss

MAX_LENGTH, BATCH = 256, 8


def demonstrations(n_train: int, n_validation: int, tokenizer):
    """{prompt, response} rows whose chat fits in MAX_LENGTH tokens (so neither arm truncates)."""
    train, held_out = load_split()
    fits = lambda p: len(encode_demonstration(tokenizer, p.prompt.strip(), p.chosen.strip(), 10_000)[0]) <= MAX_LENGTH  # noqa: E731
    pick = lambda pairs, n: [{"prompt": p.prompt.strip(), "response": p.chosen.strip()} for p in pairs if p.chosen.strip() and fits(p)][:n]  # noqa: E731
    return pick(train, n_train), pick(held_out, n_validation)


def tokens_of(rows, tokenizer) -> int:
    return sum(len(encode_demonstration(tokenizer, r["prompt"], r["response"], MAX_LENGTH)[0]) for r in rows)


def held_out_loss(model, tokenizer, validation) -> float:
    batches = make_batches([encode_demonstration(tokenizer, r["prompt"], r["response"], MAX_LENGTH) for r in validation],
                           BATCH, tokenizer.pad_token_id, False, 0)
    return validation_loss(model.float().eval(), batches, torch.device("cpu"), bf16=False)


def run_ours(n_train: int, n_validation: int) -> dict:
    model, tokenizer = load_generator(EMBEDDED_GENERATOR)
    train, validation = demonstrations(n_train, n_validation, tokenizer)
    before = held_out_loss(model, tokenizer, validation)
    model.train()
    config = SFTConfig(epochs=1, max_length=MAX_LENGTH, batch_size=BATCH, early_stop_patience=1)
    started = time.perf_counter()
    model, metrics = fit(model, tokenizer, train, validation, config)
    seconds = time.perf_counter() - started
    return {"arm": "ours", "train": len(train), "tokens_per_s": metrics["train/tokens_per_s"],
            "wall_tokens_per_s": tokens_of(train, tokenizer) / seconds, "val_loss_before": before,
            "val_loss": held_out_loss(model, tokenizer, validation), "peak_rss_mb": peak_rss_mb()}


def run_trl(n_train: int, n_validation: int) -> dict:
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    folder = resolve_model_path(EMBEDDED_GENERATOR)
    _, tokenizer = load_generator(EMBEDDED_GENERATOR)
    train, validation = demonstrations(n_train, n_validation, tokenizer)
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": r["prompt"]}] for r in train],
                                 "completion": [[{"role": "assistant", "content": r["response"]}] for r in train]})
    with tempfile.TemporaryDirectory() as out:
        args = TRLSFTConfig(output_dir=out, num_train_epochs=1, max_length=MAX_LENGTH, per_device_train_batch_size=BATCH,
                            report_to=[], save_strategy="no", seed=0, disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                            **trl_precision())
        trainer = SFTTrainer(model=folder, args=args, train_dataset=dataset)
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        output = trainer.train()
        seconds = output.metrics["train_runtime"]
        loss = held_out_loss(trainer.model, tokenizer, validation)
    return {"arm": "trl", "train": len(train), "tokens_per_s": tokens / seconds, "val_loss": loss, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", choices=["ours", "trl"])
    parser.add_argument("--train", type=int, default=128)
    parser.add_argument("--validation", type=int, default=48)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps((run_ours if args.arm == "ours" else run_trl)(args.train, args.validation)))
        return
    results = {}
    for arm in ("trl", "ours"):
        results[arm] = run_in_own_process("bench.sft", "--arm", arm, "--train", args.train, "--validation", args.validation)
        print(f"{arm}: {results[arm]['tokens_per_s']:.0f} tokens/s, validation loss {results[arm]['val_loss']:.3f}", flush=True)
    save("sft", {**results, "tokens_per_s_ratio": results["ours"]["tokens_per_s"] / results["trl"]["tokens_per_s"],
                 "val_loss_difference": results["ours"]["val_loss"] - results["trl"]["val_loss"]})


if __name__ == "__main__":
    main()
