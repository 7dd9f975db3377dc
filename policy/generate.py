"""Sample K completions per prompt with a generator version and store them as items to rank.

Run from the admin page (a background job) or the command line:
    python -m policy.generate --prompt-set builtin --k 4 --max-new-tokens 128
"""

import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from data import conversation, generators, items, uncertainty, versions
from data.items import NewCompletion
from data.jobs import job_main
from data.store import write_transaction
from policy.config import GenerationConfig
from policy.models import load_generator
from policy.remote import sample_remote
from policy.sampling import sample_tokens
from training.precision import precision_for, use_bf16

VERSUS_SEED_OFFSET = 2**20  # a head-to-head's other version samples with seed + b + this: a near copy (a version a step
# from its start) would otherwise write the very answers of the version it is compared with


@dataclass
class Sample:
    text: str
    n_tokens: int  # generated tokens before the first EOS
    finish_reason: str  # "eos" or "length"


Prompt = str | list[dict]  # plain text, or a conversation's messages ending with the user turn to answer


def prompt_messages(prompt: Prompt) -> list[dict]:
    return conversation.as_messages(prompt) if isinstance(prompt, str) else prompt


def chat_inputs(tokenizer, prompts: list[Prompt], max_tokens: int | None = None):
    """Tokenised, left-padded prompts with the chat template applied when the model has one.

    Without a template a plain prompt is its text and a conversation its transcript cueing "Assistant:".
    `max_tokens`: a longer prompt loses its beginning, never its end (the last turns and the assistant cue).
    """
    if tokenizer.chat_template:
        texts = [tokenizer.apply_chat_template(prompt_messages(p), tokenize=False, add_generation_prompt=True)
                 for p in prompts]
    else:
        texts = [conversation.untemplated(prompt_messages(p)) for p in prompts]
    tokenizer.truncation_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not tokenizer.chat_template,
                     truncation=max_tokens is not None, max_length=max_tokens)


def eos_token_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    ids.add(tokenizer.eos_token_id)
    return sorted(i for i in ids if i is not None)


def completion_lengths(generated: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens before the first EOS, and whether an EOS came at all, per row.

    The pad token is the EOS token for many chat models, so the cut is by position
    (first EOS), never by masking a token id.
    generated: [N, T] -> lengths [N], ended [N]
    """
    is_eos = torch.isin(generated, torch.tensor(eos_ids, device=generated.device))  # [N, T]
    ended = is_eos.any(dim=1)  # [N]
    first_eos = is_eos.int().argmax(dim=1)  # [N], 0 where no EOS
    lengths = torch.where(ended, first_eos, torch.full_like(first_eos, generated.shape[1]))
    return lengths, ended


@torch.no_grad()
def sample(model, tokenizer, prompts: list[Prompt], k: int, temperature: float, top_p: float,
           max_new_tokens: int, seed: int, on_token=lambda tokens_so_far: None) -> list[list[Sample]]:
    """K sampled completions for each prompt, batched across prompts with the KV cache, each prompt run once.
    `on_token(t)`: after each decoding step, the tokens written so far per row (sampling.sample_tokens)."""
    inputs = chat_inputs(tokenizer, prompts).to(model.device)
    eos_ids = eos_token_ids(model, tokenizer)
    torch.manual_seed(seed)
    generated = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], k, max_new_tokens, temperature,
                              eos_ids, tokenizer.pad_token_id, top_p, on_token)  # [B*K, T]
    lengths, ended = completion_lengths(generated, eos_ids)
    samples = [
        Sample(tokenizer.decode(row[:n], skip_special_tokens=True).strip(), int(n), "eos" if end else "length")
        for row, n, end in zip(generated, lengths.tolist(), ended.tolist())
    ]
    return [samples[i * k:(i + 1) * k] for i in range(len(prompts))]


def within_batch(job, done: int, batch: int, total: int, max_new_tokens: int, every_s: float = 1.0,
                 part: tuple[float, float] = (0.0, 1.0)):
    """`on_token` for one batch: the job's progress moves with the tokens written (at most once every `every_s`),
    so a set smaller than a batch, or a batch of long answers, does not sit at its last figure for minutes; each
    report also lets a Cancel through. `part`: (where this pass starts, its share) of a batch sampled in two passes
    (a head-to-head's two versions), so the progress does not go back when the second starts."""
    last = time.perf_counter()

    def on_token(t: int) -> None:
        nonlocal last
        if time.perf_counter() - last >= every_s:
            last = time.perf_counter()
            so_far = done + batch * (part[0] + part[1] * t / max_new_tokens)
            job.progress(so_far, total, f"{done}/{total} prompts, the next {batch} at token {t} of at most "
                                        f"{max_new_tokens} · {job.eta(so_far, total)} (at most: answers often end sooner)")
    return on_token


def run_generation(db, config: GenerationConfig, job) -> dict:
    """Generate for every prompt of the set and store each prompt's K completions as one item.

    With remote generators in the mix, or another version in a head-to-head (`versus_version`), each item holds
    completions from several models (arena-style), in an order shuffled per prompt so that a position says nothing
    about the model; annotators never see which wrote what.
    """
    mix = [(generators.remote_generator(db, name), n) for name, n in generators.parse_mix(config.remote).items()]
    k_local = config.k - sum(n for _, n in mix) - config.versus_k
    version = versions.version_or_active(db, "generator", config.generator_version) if k_local else None
    versus = head_to_head_version(db, config, version)
    prompts = prompts_to_generate(db, config, version, [g.name for g, _ in mix], versus)
    if not prompts:
        sources = ", ".join([v["name"] for v in (version, versus) if v] + [g.name for g, _ in mix])
        why = (f"every prompt of {config.prompt_set!r} already has an item with completions from {sources} (untick "
               "'Skip prompts already done by these sources' to sample them again)")
        job.log(f"nothing to do: {why}")
        return {"items": 0, "completions": 0, "nothing_to_do": why}  # the card says why, not only the log
    model = tokenizer = None
    if k_local:
        job.log(f"loading generator {version['name']} ({version['path']})")
        job.phase("loading the generator")
        model, tokenizer = load_generator(version["path"], config.device)
        job.fact("precision", str(precision_for(config.bf16, model.device, model.config)))

    rival = rival_tokenizer = None
    if versus:
        job.log(f"loading the head-to-head's other version {versus['name']} ({versus['path']}): {config.versus_k} of each "
                "item's answers")
        rival, rival_tokenizer = load_generator(versus["path"], config.device)

    def autocast(m=model):
        bf16 = m is not None and use_bf16(config.bf16, m.device, m.config)
        return torch.autocast(m.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    for g, n in mix:
        job.log(f"remote generator {g.name}: {n} per item from {g.model} at {g.base_url}, {g.concurrency} requests at a time")
    first_pass = k_local / max(k_local + config.versus_k, 1)  # a batch's share the generator version samples, before its rival
    params = {k: v for k, v in asdict(config).items() if k in ("k", "temperature", "top_p", "max_new_tokens")}
    job.phase(f"sampling {len(prompts)} prompts x {config.k}"
              + (f" ({config.versus_k} of each by {versus['name']}, after each batch's others)" if versus else ""))
    tokens, started, cut, written, empty = 0, time.perf_counter(), 0, 0, 0
    for b, start in enumerate(range(0, len(prompts), config.prompts_per_batch)):
        batch = prompts[start:start + config.prompts_per_batch]
        batch_started = time.perf_counter()
        messages = [conversation.as_messages(p["text"], p["messages"]) for p in batch]  # continued turn by turn
        with autocast():
            local = (sample(model, tokenizer, messages, k_local, config.temperature, config.top_p, config.max_new_tokens,
                            config.seed + b, within_batch(job, start, len(batch), len(prompts), config.max_new_tokens,
                                                          part=(0.0, first_pass)))
                     if k_local else [[] for _ in batch])
        seconds = time.perf_counter() - batch_started  # the local sampling alone: remote requests time themselves
        rival_started, rival_seed = time.perf_counter(), config.seed + b + VERSUS_SEED_OFFSET  # never the same draws
        with autocast(rival):
            rivals = (sample(rival, rival_tokenizer, messages, config.versus_k, config.temperature, config.top_p,
                             config.max_new_tokens, rival_seed,  # progress and Cancel as the batch's first pass
                             within_batch(job, start, len(batch), len(prompts), config.max_new_tokens,
                                          part=(first_pass, 1.0 - first_pass)))
                      if versus else [[] for _ in batch])
        rival_seconds = time.perf_counter() - rival_started
        remote = [(g, sample_remote(g, messages, n, seed=(config.seed + b) * 1000)) for g, n in mix]  # all, or an error
        batch_tokens = sum(s.n_tokens for samples in local for s in samples)
        rival_tokens = sum(s.n_tokens for samples in rivals for s in samples)
        with write_transaction(db):
            for p, prompt in enumerate(batch):
                completions = [NewCompletion(s.text, version["id"], version["name"], params, config.seed + b, s.n_tokens,
                                             s.finish_reason, seconds * s.n_tokens / max(batch_tokens, 1)) for s in local[p]]
                completions += [NewCompletion(s.text, versus["id"], versus["name"], params, rival_seed, s.n_tokens,
                                              s.finish_reason, rival_seconds * s.n_tokens / max(rival_tokens, 1))
                                for s in rivals[p]]
                completions += [remote_completion(g, s) for g, samples in remote for s in samples[p]]
                if mix or versus:
                    random.Random(f"{config.seed}:{prompt['id']}").shuffle(completions)
                items.add_item(db, prompt["id"], completions, job_id=job.id)
                empty += sum(not c.text.strip() for c in completions)  # kept: an empty answer is ranked like any other
        ended = [s.finish_reason for samples in local + rivals for s in samples] + [
            s.finish_reason for _, samples in remote for row in samples for s in row]
        cut, written = cut + ended.count("length"), written + len(ended)
        tokens += batch_tokens + rival_tokens + sum(s.n_tokens or 0 for _, samples in remote for row in samples for s in row)
        done = start + len(batch)
        rate = tokens / (time.perf_counter() - started)
        job.progress(done, len(prompts), f"{done}/{len(prompts)} prompts, {rate:.0f} tokens/s")
        job.log(f"batch {b}: {len(batch)} prompts x {config.k}, {tokens} tokens so far, "
                f"{time.perf_counter() - batch_started:.1f} s")
    elapsed = time.perf_counter() - started
    score_new_items(db, config, job)
    if cut:
        job.log(f"{cut} of {written} completions ({cut / written:.0%}) were cut at the cap of {config.max_new_tokens} tokens: "
                "annotators see them marked; raise max_new_tokens for finished answers")
    if empty:
        job.log(f"{empty} completions are empty (the model answered nothing): kept, shown as \"(empty answer)\"")
    return {"items": len(prompts), "completions": len(prompts) * config.k, "cut_at_cap": f"{cut} of {written}",
            **({"empty_answers": empty} if empty else {}), "tokens": tokens,
            "tokens_per_s": round(tokens / elapsed, 1), "generator_version": version["id"] if version else None,
            "remote": {g.name: n for g, n in mix}, **({"versus": {versus["name"]: config.versus_k}} if versus else {})}


def head_to_head_version(db, config: GenerationConfig, version: dict | None) -> dict | None:
    """The version writing `versus_k` of each item's answers beside the generator version (None: no head-to-head);
    refused when it is the same version (the active one, when the generator was left to the default)."""
    if not config.versus_k:
        return None
    versus = versions.get_version(db, config.versus_version)
    if versus is None or versus["kind"] != "generator":
        raise LookupError(f"there is no generator version {config.versus_version} for the head-to-head: see the Models "
                          "screen or `python -m data versions` for the ids")
    if version and versus["id"] == version["id"]:
        raise ValueError(f"the head-to-head's two versions are both {version['name']}: pick another versus version")
    return versus


def score_new_items(db, config: GenerationConfig, job) -> None:
    """In a set served least certain first, the new items get the active reward model's uncertainty (a job of its own)."""
    if scoring := uncertainty.score_in_background(db, [config.prompt_set]):
        job.log(f"job {scoring} scores the new items for the least-certain-first queue")


def prompts_to_generate(db, config: GenerationConfig, version: dict | None, remote_names: list[str],
                        versus: dict | None = None) -> list[dict]:
    if not config.skip_done:
        prompts = items.prompts_of_set(db, config.prompt_set)
    elif not remote_names and not versus:
        prompts = items.prompts_without_completions_from(db, config.prompt_set, version["id"])
    else:  # an item from this same mix of sources
        prompts = items.prompts_without_item_from(db, config.prompt_set, version["id"] if version else None, remote_names,
                                                  versus["id"] if versus else None)
    return prompts[: config.limit] if config.limit else prompts


def remote_completion(g, s) -> NewCompletion:
    """A remote completion with its provenance: which server and model, the sampling, usage, latency. Never the key."""
    params = {"base_url": g.base_url, "model": g.model, "temperature": g.temperature, "top_p": g.top_p,
              "max_tokens": g.max_tokens, "usage": s.usage, **({"system_fingerprint": s.fingerprint} if s.fingerprint else {})}
    return NewCompletion(s.text, None, g.name, params, s.seed, s.n_tokens, s.finish_reason, s.seconds)


if __name__ == "__main__":
    raise SystemExit(job_main("generate", GenerationConfig, run_generation))
