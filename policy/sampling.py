"""The one decode loop behind rollouts and generation for annotation.

It differs from `model.generate` in one way that matters here: each prompt is run once, not once per sample. The
prompt's KV cache is computed for B prompts and then repeated K times (generate repeats the input first and so runs
B*K copies of every prompt through the model).

Sampling semantics are generate's: softmax(logits / temperature), then nucleus (top-p) filtering when top_p < 1,
no top-k; after a row's first EOS its tokens are padding, masked later by position (never by token id).
"""


import torch
import torch.nn.functional as F


@torch.no_grad()
def sample_tokens(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int, max_new_tokens: int,
                  temperature: float, eos_ids: list[int], pad_id: int, top_p: float = 1.0) -> torch.Tensor:
    """K samples for each left-padded prompt [B, P]: tokens [B*K, T], each prompt's K samples together, padding
    after the first EOS. A dynamic KV cache: on this CPU a static cache and a compiled decode step were slower
    (bench/README.md)."""
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
        if t == T - 1 or bool(finished.all()):
            break
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
