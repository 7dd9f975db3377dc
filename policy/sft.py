"""Supervised fine-tuning on demonstrations: step 1 of InstructGPT.

    python -m policy.sft --epochs 3

Causal-LM loss on the response tokens only (the prompt is context, not a target), chat template
applied, batches of similar length, validation loss and perplexity on held-out prompts, early
stop on validation loss. The result is a new generator version like any other.

The parts, in the order every trainer lists them (rm/train.py, here, policy/dpo.py, policy/train.py):
  config      policy/config.py:SFTConfig
  data        demonstrations split by prompt (training/rankings.py); encode_demonstration, make_batches
  loss        sft_loss: cross-entropy of the response tokens
  loop        fit(model, tokenizer, train, validation, config, on_step) -> (model, metrics)
  evaluation  validation_loss on the held-out demonstrations (and its perplexity)
  job entry   run_job(db, config, job), run by `python -m policy.sft`
"""

import math
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data import conversation, demonstrations, versions
from data.jobs import job_main
from policy.config import SFTConfig
from policy.generate import Prompt, prompt_messages
from policy.models import load_generator, save_generator_version, with_lora_adapter
from training import checkpointing, gate, quantization, release_freed_memory, warmup_then_decay
from training.precision import autocast, precision_for, use_bf16
from training.parallel import DataParallel
from training.rankings import split_by_prompt


@dataclass
class SFTBatch:
    input_ids: torch.Tensor  # [B, T] right-padded prompt + response
    attention_mask: torch.Tensor  # [B, T]
    target_ids: torch.Tensor  # [B, T] the next token at each position
    response_mask: torch.Tensor  # [B, T] 1 where the next token is a response token (the loss counts only these)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def encode_demonstration(tokenizer, prompt: Prompt, response: str, max_length: int) -> tuple[list[int], int]:
    """(token ids of the whole chat, number of prompt tokens). The response ends with the end-of-turn token.

    The prompt, text or a conversation's messages, is context; the response is the final assistant turn.
    """
    messages = prompt_messages(prompt)
    if tokenizer.chat_template:
        prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        full_ids = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": response}],
                                                 tokenize=True)
        prompt_ids, full_ids = _ids(prompt_ids), _ids(full_ids)
        if full_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError("the chat template renders the prompt differently with and without an answer: cannot mask it")
    else:
        prompt_ids = tokenizer(conversation.untemplated(messages) + "\n")["input_ids"]
        full_ids = prompt_ids + tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return full_ids[:max_length], min(len(prompt_ids), max_length)


def _ids(value) -> list[int]:
    return list(value["input_ids"] if hasattr(value, "keys") else value)


def make_batches(rows: list[tuple[list[int], int]], batch_size: int, pad_id: int, shuffle: bool, seed: int) -> list[SFTBatch]:
    """Rows of similar length together (little padding), batch order shuffled."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        random.Random(seed).shuffle(chunks)
    return [_collate([rows[i] for i in chunk], pad_id) for chunk in chunks]


def _collate(rows, pad_id: int) -> SFTBatch:
    T = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), T), dtype=torch.long)
    targets = torch.full((len(rows), T), pad_id, dtype=torch.long)
    response = torch.zeros((len(rows), T), dtype=torch.bool)
    for r, (ids, n_prompt) in enumerate(rows):
        input_ids[r, :len(ids)] = torch.tensor(ids)
        attention[r, :len(ids)] = 1
        targets[r, :len(ids) - 1] = torch.tensor(ids[1:])
        response[r, max(n_prompt - 1, 0):len(ids) - 1] = True  # position t predicts token t+1
    return SFTBatch(input_ids, attention, targets, response)


def sft_loss(model, batch: SFTBatch, whole: bool = False) -> torch.Tensor:
    """Mean cross-entropy of the response tokens. The LM head runs on response positions only, or with `whole` (a
    model sharded by FSDP, whose parts cannot be called alone) on every position through the model's own forward.

    Prompt positions never reach the loss, whatever their target ids say.
    """
    if whole:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # [B, T, V]
        return F.cross_entropy(logits[batch.response_mask].float(), batch.target_ids[batch.response_mask])
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state  # [B, T, H]
    selected = hidden[batch.response_mask]  # [n, H] states that predict a response token
    logits = base.get_output_embeddings()(selected).float()  # [n, V]
    return F.cross_entropy(logits, batch.target_ids[batch.response_mask])


@torch.no_grad()
def validation_loss(model, batches: list[SFTBatch], device, bf16: bool, whole: bool = False) -> float:
    total, tokens = 0.0, 0
    for batch in batches:
        n = int(batch.response_mask.sum())
        with autocast(device, bf16):
            total += sft_loss(model, _to(batch, device), whole).item() * n
        tokens += n
    return total / max(tokens, 1)


def _to(batch: SFTBatch, device) -> SFTBatch:
    return SFTBatch(*(t.to(device) for t in (batch.input_ids, batch.attention_mask, batch.target_ids, batch.response_mask)))


def fit(model, tokenizer, train: list[dict], validation: list[dict], config: SFTConfig, on_step=lambda step, total, metrics: None,
        parallel: DataParallel | None = None):
    """Train on {prompt, response} rows; returns (model, metrics). Keeps the weights of the best validation loss.

    Under `accelerate launch`, `parallel` gives each process its share of the batches and averages the gradients;
    every process validates on all held-out rows (the replicas are equal), and only the first one reports.
    """
    torch.manual_seed(config.seed)
    parallel = parallel or DataParallel(str(model.device))
    device = parallel.device
    bf16 = use_bf16(config.bf16, device, model.config)
    if config.lora:
        # The frozen base stays fp32 as loaded (autocast casts its weights per product), where the policy update and
        # DPO load it in bf16 when bf16 is chosen (training.precision.load_dtype), measured there for step time and
        # memory (bench/README.md). SFT's LoRA has not been measured so, and a bf16 base would change its numbers
        # (embeddings and norms in bf16 too, not only the products).
        model = with_lora_adapter(model, config.lora_rank, bf16_base=False)
    if config.gradient_checkpointing:
        checkpointing.enable(model)
    model = parallel.prepare(model)
    model.train()
    encode = lambda rows: [encode_demonstration(tokenizer, conversation.as_messages(r["prompt"], r.get("messages")),  # noqa: E731
                                                r["response"], config.max_length) for r in rows]
    train_rows, val_batches = encode(train), make_batches(encode(validation), config.batch_size, tokenizer.pad_token_id, False, 0)
    steps_per_epoch = parallel.steps(math.ceil(len(train_rows) / config.batch_size))
    total = steps_per_epoch * config.epochs
    report = on_step if parallel.is_main else lambda step, total, metrics: None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    schedule = warmup_then_decay(optimizer, total, total // 10)
    whole = parallel.sharded
    start_loss = validation_loss(model, val_batches, device, bf16, whole)
    best = {"loss": start_loss, "epoch": 0, "state": None}
    step, tokens, seconds, bad_epochs = 0, 0, 0.0, 0
    for epoch in range(1, config.epochs + 1):
        for batch in parallel.shard(make_batches(train_rows, config.batch_size, tokenizer.pad_token_id, True, config.seed + epoch)):
            started = time.perf_counter()
            with autocast(device, bf16):
                loss = sft_loss(model, _to(batch, device), whole)
            parallel.backward(loss)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            release_freed_memory()  # the step's gradients and gathered weights, so the heap does not grow step by step
            seconds += time.perf_counter() - started
            step, tokens = step + 1, tokens + batch.n_tokens
            report(step, total, {"train/epoch": epoch, "train/loss": loss.item(), "train/lr": schedule.get_last_lr()[0],
                                 "speed/tokens_per_s": tokens / seconds})
        val = validation_loss(model, val_batches, device, bf16, whole)
        report(step, total, {"train/epoch": epoch, "val/loss": val, "val/perplexity": math.exp(min(val, 50))})
        if val < best["loss"]:
            best, bad_epochs = {"loss": val, "epoch": epoch, "state": _trainable_state(parallel.resharded(model))}, 0
        else:
            bad_epochs += 1
            if bad_epochs >= config.early_stop_patience:
                break
    if best["state"] is not None:
        _restore(parallel.resharded(model), best["state"])
    return model, {"val/loss_before": start_loss, "val/loss": best["loss"], "val/perplexity": math.exp(min(best["loss"], 50)),
                   "best_epoch": best["epoch"], "epochs_run": epoch, "steps": step, "train/tokens_per_s": tokens / max(seconds, 1e-9),
                   "train/demonstrations": len(train), "val/demonstrations": len(validation)}


def _trainable_state(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _restore(model, state: dict) -> None:
    """Copy a kept `_trainable_state` back in place (a sharded model's shards into its shards)."""
    for name, parameter in model.named_parameters():
        if name in state:
            parameter.copy_(state[name])


def run_job(db, config: SFTConfig, job) -> dict:
    """Job body: load demonstrations, fine-tune, save and register a new generator version."""
    start = versions.version_or_active(db, "generator", config.generator_version)
    parallel = DataParallel(config.device, strategy=config.strategy)
    rows = parallel.share(demonstrations.demonstrations(db, config.prompt_sets or None) if parallel.is_main else None)  # the same rows everywhere
    train, validation = split_by_prompt(rows, config.validation_fraction, config.seed, prompt_of=lambda r: r["prompt_id"])
    if len(train) < 1 or len(validation) < 1:
        raise ValueError(f"need demonstrations for at least 2 prompts (one held out), have {len(rows)}: "
                         "write some on the Annotate page (Write demonstrations) or import them")
    job.log(f"SFT of {start['name']} on {len(train)} demonstrations ({len(validation)} held out)"
            + (f", {parallel.processes} processes" if parallel.processes > 1 else ""))
    job.phase("loading the generator")
    model, tokenizer = load_generator(start["path"], str(parallel.device), quantize=config.quantize)
    if config.quantize != "none":
        job.fact("base weights", quantization.job_fact(config.quantize))
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    precision = precision_for(config.bf16, parallel.device, model.config)
    job.fact("precision", str(precision))

    def on_step(step, total, metrics):
        job.metrics(step, metrics)
        if "train/loss" in metrics:
            job.step_progress(step, total, f"loss {metrics['train/loss']:.3f}")

    job.phase(f"training on {len(train)} demonstrations")
    model, metrics = fit(model, tokenizer, train, validation, config, on_step, parallel)
    whole_state = parallel.full_state(model)  # sharded: every process sends its shard, the first one saves
    parallel.wait()
    if not job.writes:  # one process of several: the first one saves
        return {}
    model.eval()
    job.phase("saving")
    name = config.name or versions.default_version_name("sft")

    activate, activation = gate.decide(config.activate, gate.sft_gate(metrics))
    version_id = save_generator_version(db, model, tokenizer, name, start["id"], config, metrics, "sft_config.json", activate,
                                        state_dict=whole_state)
    job.log(f"saved {name}: validation loss {metrics['val/loss_before']:.3f} -> {metrics['val/loss']:.3f}; {activation}")
    return {"version": version_id, "name": name, "activation": activation, "precision": str(precision), "val/loss": round(metrics["val/loss"], 4),
            "val/perplexity": round(metrics["val/perplexity"], 2)}


if __name__ == "__main__":
    raise SystemExit(job_main("sft", SFTConfig, run_job))
