"""The one decode loop behind rollouts and generation for annotation.

It differs from `model.generate` in one way that matters here: each prompt is run once, not once per sample. The
prompt's KV cache is computed for B prompts and then repeated K times (generate repeats the input first and so runs
B*K copies of every prompt through the model).

Sampling semantics are generate's: softmax(logits / temperature), then nucleus (top-p) filtering when top_p < 1,
no top-k; after a row's first EOS its tokens are padding, masked later by position (never by token id).

On a GPU a small model's decoding is bound by kernel launches, not arithmetic (~40 ms a token for 135M parameters on
an H100, whatever the batch). There the decode step runs from a static KV cache captured in a CUDA graph, through
transformers' own compiled path (`generate` with `cache_implementation="static"`, which compiles the step with
torch.compile's "reduce-overhead" mode); prompts are left-padded to a multiple of PAD_TO tokens so a few shapes cover
every call. The prompt then runs K times (a repeated copy per sample), which costs little there. It is opt-in until it
is measured on a GPU (RLHF_COMPILED_DECODE=1; `bash bench/gpu.sh` compares it with the loop): the CPU tests check it
eagerly against the loop, no GPU has run it yet. A compile that fails falls back to the loop, once, with a warning.
"""

import os
import warnings

import torch
import torch.nn.functional as F

PAD_TO = 64  # prompt lengths are rounded up to this on the compiled path: each new shape is a new CUDA graph
_compile_failed = False  # set once the compiled path has failed in this process: the loop is used from then on


@torch.no_grad()
def sample_tokens(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int, max_new_tokens: int,
                  temperature: float, eos_ids: list[int], pad_id: int, top_p: float = 1.0,
                  on_token=lambda tokens_so_far: None, lockstep=None) -> torch.Tensor:
    """K samples for each left-padded prompt [B, P]: tokens [B*K, T], each prompt's K samples together, padding
    after the first EOS. On CPU a dynamic KV cache (a static cache and a compiled decode step were slower there,
    bench/README.md); on CUDA the compiled static-cache step (module docstring). `on_token(t)` hears after each
    decoding step of the eager loop how many tokens each row has so far (a long batch's progress).
    `lockstep(done) -> bool`: whether every process sampling beside this one is done too (a model sharded across
    processes, whose every forward pass they run together: training/parallel.py:DataParallel.everyone); with it, the
    eager loop stops only when all are, and a process whose rows have all ended decodes padding until then."""
    global _compile_failed
    all_done = lockstep or (lambda done: done)
    if compiled_decode(model.device) and not _compile_failed and lockstep is None:
        try:
            return sample_tokens_static(model, input_ids, attention_mask, k, max_new_tokens, temperature, eos_ids, pad_id,
                                        top_p, compile_step=True)
        except Exception as error:  # noqa: BLE001  an op the compiler cannot take: the eager loop is always right
            _compile_failed = True
            warnings.warn(f"compiled decoding failed ({type(error).__name__}: {error}); decoding without it from now on")
    from transformers import DynamicCache

    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    B, P = input_ids.shape
    N, T = B * k, max_new_tokens
    positions = (attention_mask.cumsum(1) - 1).clamp(min=0)  # [B, P] left padding does not shift positions
    cache = DynamicCache(config=model.config)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(k)  # [B, ...] -> [N, ...]: each prompt's cache for its K samples
    logits = out.logits[:, -1].repeat_interleave(k, 0)  # [N, V]
    mask = torch.cat([attention_mask.repeat_interleave(k, 0), attention_mask.new_ones(N, T)], 1)  # [N, P+T]
    next_position = positions[:, -1:].repeat_interleave(k, 0) + 1  # [N, 1]

    tokens = torch.full((N, T), pad_id, dtype=torch.long, device=input_ids.device)  # [N, T]
    finished = torch.zeros(N, dtype=torch.bool, device=input_ids.device)  # [N]
    eos = torch.tensor(eos_ids, dtype=torch.long, device=input_ids.device)
    for t in range(T):
        token = torch.where(finished, pad_id, _sample(logits.float() / temperature, top_p))  # [N]
        tokens[:, t] = token
        finished |= torch.isin(token, eos)
        if t == T - 1 or all_done(bool(finished.all())):
            break
        on_token(t + 1)
        out = model(input_ids=token.unsqueeze(1), attention_mask=mask[:, :P + t + 1], position_ids=next_position + t,
                    past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]  # [N, V]
    return tokens


def _sample(scaled_logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """One token per row from softmax(scaled_logits), within the top-p nucleus when top_p < 1. [R, V] -> [R]"""
    probs = F.softmax(scaled_logits, dim=-1)  # [R, V]
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # [R, V]
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # mass before a token already past top_p; the top token stays
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
    return torch.multinomial(probs, 1).squeeze(1)


def compiled_decode(device: torch.device) -> bool:
    """Whether decoding takes the compiled static-cache path: on CUDA with RLHF_COMPILED_DECODE=1 (opt-in, unmeasured)."""
    return device.type == "cuda" and os.environ.get("RLHF_COMPILED_DECODE", "0") == "1"


@torch.no_grad()
def sample_tokens_static(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int, max_new_tokens: int,
                         temperature: float, eos_ids: list[int], pad_id: int, top_p: float = 1.0,
                         compile_step: bool = True) -> torch.Tensor:
    """`sample_tokens` through transformers' `generate` on a static cache: [B, P] -> [B*K, T], the same sampling
    (no top-k, top-p as given), padding after the first EOS. `compile_step`: capture the decode step in a CUDA graph
    (off: the same static cache, eagerly; what the CPU tests compare with the loop)."""
    from transformers import CompileConfig
    from transformers import GenerationConfig as HFGenerationConfig

    input_ids, attention_mask = _left_padded_to(input_ids.to(model.device), attention_mask.to(model.device), PAD_TO, pad_id)
    settings = HFGenerationConfig(
        do_sample=True, temperature=temperature, top_k=0, top_p=top_p, max_new_tokens=max_new_tokens,
        num_return_sequences=k, eos_token_id=eos_ids or None, pad_token_id=pad_id, cache_implementation="static",
        disable_compile=not compile_step, compile_config=CompileConfig(fullgraph=True, mode="reduce-overhead"))
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=settings)  # [N, P+T']
    tokens = out[:, input_ids.shape[1]:]  # [N, T'], T' <= T when every row ended early
    tokens = F.pad(tokens, (0, max_new_tokens - tokens.shape[1]), value=pad_id)  # [N, T]
    return _padded_after_first_eos(tokens, eos_ids, pad_id)


def _left_padded_to(input_ids: torch.Tensor, attention_mask: torch.Tensor, multiple: int, pad_id: int):
    """Left padding up to a multiple of `multiple` columns (masked, so positions and outputs do not change)."""
    extra = -input_ids.shape[1] % multiple
    return F.pad(input_ids, (extra, 0), value=pad_id), F.pad(attention_mask, (extra, 0), value=0)


def _padded_after_first_eos(tokens: torch.Tensor, eos_ids: list[int], pad_id: int) -> torch.Tensor:
    """Tokens after each row's first EOS set to padding (generate does so already; this makes it a guarantee).
    [N, T] -> [N, T]"""
    if not eos_ids:
        return tokens
    is_eos = torch.isin(tokens, torch.tensor(eos_ids, device=tokens.device))  # [N, T]
    after = (is_eos.long().cumsum(1) - is_eos.long()) > 0  # [N, T] strictly after the first EOS
    return tokens.masked_fill(after, pad_id)
