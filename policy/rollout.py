"""A rollout: K sampled completions for each of a few prompts, and the log-probs of their tokens.

The policy update samples and scores rollouts (policy/train.py), DPO reads a ranking's K completions as one
(policy/dpo.py), and the held-out evaluation samples them from the trained and the starting policy (policy/evaluation.py).
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data import conversation
from policy.generate import Prompt, chat_inputs, completion_lengths, eos_token_ids, prompt_messages
from policy.sampling import sample_tokens


@dataclass
class Rollout:
    sequences: torch.Tensor  # [N, P+T] left-padded prompt, then the sampled completion; N = B*K, a prompt's K rows together
    attention_mask: torch.Tensor  # [N, P+T] real prompt tokens and completion tokens up to the first EOS
    completion_mask: torch.Tensor  # [N, T] the completion tokens the policy chose (the first EOS included)
    prompt_length: int  # P
    k: int  # samples per prompt
    ended: torch.Tensor  # [N] whether the completion reached an EOS
    prompts: list[str]  # the prompt of each row as text (a conversation's transcript): the reward model's input
    texts: list[str]  # decoded completions

    def to(self, device) -> "Rollout":
        return Rollout(self.sequences.to(device), self.attention_mask.to(device), self.completion_mask.to(device),
                       self.prompt_length, self.k, self.ended.to(device), self.prompts, self.texts)

    def rows(self, start: int, stop: int) -> "Rollout":
        """Rows start..stop-1 (whole prompts): one micro-batch, without the columns that are padding in all of its rows,
        on the left of the prompt and after the longest completion (a short prompt's micro-batch does not carry the
        longest prompt's padding through every layer, nor short completions the longest one's)."""
        mask = self.attention_mask[start:stop]  # [n, P+T]
        left = int((mask[:, :self.prompt_length] == 0).all(0).long().cumprod(0).sum())  # leading padding columns
        width = max(1, int(self.completion_mask[start:stop].sum(1).max()))  # T' <= T completion columns used
        end = self.prompt_length + width
        return Rollout(self.sequences[start:stop, left:end], mask[:, left:end], self.completion_mask[start:stop, :width],
                       self.prompt_length - left, self.k, self.ended[start:stop], self.prompts[start:stop], self.texts[start:stop])


@torch.no_grad()
def sample_rollout(model, tokenizer, prompts: list[Prompt], k: int, max_new_tokens: int, temperature: float,
                   max_prompt_tokens: int | None = None, lockstep=None) -> Rollout:
    """K samples per prompt from the full tempered distribution (no top-p/top-k, so log-probs match).

    The policy continues each prompt's messages (the last `max_prompt_tokens` of them); the rollout keeps the
    prompt's text for the reward scorer. `lockstep`: a sharded model's (policy.sampling.sample_tokens).
    """
    inputs = chat_inputs(tokenizer, prompts, max_prompt_tokens).to(model.device)
    eos_ids = eos_token_ids(model, tokenizer)
    completion = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], k, max_new_tokens, temperature,
                               eos_ids, tokenizer.pad_token_id, lockstep=lockstep)  # [N, T]
    sequences = torch.cat([inputs["input_ids"].repeat_interleave(k, 0), completion], 1)  # [N, P+T]
    lengths, ended = completion_lengths(completion, eos_ids)  # [N], [N]
    positions = torch.arange(completion.shape[1], device=completion.device)  # [T]
    completion_mask = positions < (lengths + ended.long()).unsqueeze(1)  # [N, T]; masked after the first EOS, by position
    attention_mask = torch.cat([inputs["attention_mask"].repeat_interleave(k, 0), completion_mask.long()], dim=1)
    texts = [tokenizer.decode(row[:n], skip_special_tokens=True).strip() for row, n in zip(completion, lengths.tolist())]
    return Rollout(sequences, attention_mask, completion_mask, inputs["input_ids"].shape[1], k, ended,
                   [conversation.transcript(prompt_messages(p)) for p in prompts for _ in range(k)], texts)


def completion_logprobs(model, rollout: Rollout, temperature: float, value_head=None, with_entropy: bool = True):
    """Log-probs and entropy (a metric; None without `with_entropy`) of the completion tokens (fp32), and values
    when a value head is given.

    Each prompt goes through the model once, not K times: its keys and values are computed for the B distinct
    prompts and repeated for their K completions (gradients flow back through the repeat). The LM head runs on
    the completion positions only, as one contiguous [N*T, H] matrix.
    Returns logprobs [N, T], entropy [N, T], values [N, T] | None.
    """
    from transformers import DynamicCache

    if is_sharded(model):
        return _through_forward(model, rollout, temperature, value_head, with_entropy)
    N, T, P, k = rollout.sequences.shape[0], rollout.completion_mask.shape[1], rollout.prompt_length, rollout.k
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live inside it
    decoder = base.get_decoder()
    position_ids = (rollout.attention_mask.cumsum(1) - 1).clamp(min=0)  # [N, P+T], left padding does not shift positions
    if base.training and base.is_activation_checkpointing:  # no KV cache under checkpointing: each sequence whole
        with _adapter_input_casting_off(model):
            states = decoder(input_ids=rollout.sequences[:, :-1], attention_mask=rollout.attention_mask[:, :-1],
                             position_ids=position_ids[:, :-1]).last_hidden_state[:, P - 1:]  # [N, T, H]
        return _read_completion(base, states.reshape(N * T, -1), rollout, temperature, value_head, with_entropy)
    cache = DynamicCache(config=base.config)
    with _adapter_input_casting_off(model):
        last_prompt_state = decoder(input_ids=rollout.sequences[::k, :P], attention_mask=rollout.attention_mask[::k, :P],
                                    position_ids=position_ids[::k, :P], past_key_values=cache,
                                    use_cache=True).last_hidden_state[:, -1:]  # [B, 1, H]
        states = [last_prompt_state.repeat_interleave(k, 0)]  # [N, 1, H] the state before the first completion token
        if T > 1:
            cache.batch_repeat_interleave(k)  # each prompt's keys and values for its K completions
            states.append(decoder(input_ids=rollout.sequences[:, P:-1], attention_mask=rollout.attention_mask[:, :-1],
                                  position_ids=position_ids[:, P:-1], past_key_values=cache,
                                  use_cache=True).last_hidden_state)  # [N, T-1, H] the states before tokens 2..T
    hidden = torch.cat(states, 1).reshape(N * T, -1)  # [N*T, H] the state before each completion token
    return _read_completion(base, hidden, rollout, temperature, value_head, with_entropy)


def is_sharded(model) -> bool:
    """Whether FSDP shards the model across processes (its parts then cannot be called alone)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _through_forward(model, rollout: Rollout, temperature: float, value_head, with_entropy: bool):
    """`completion_logprobs` through the model's own forward, as a model sharded by FSDP must be run: every row whole
    (each prompt K times), the LM head on the last T positions only (`logits_to_keep`); the value head reads the
    states the LM head is given (the final norm's output, as `completion_logprobs` gives it)."""
    N, T = rollout.sequences.shape[0], rollout.completion_mask.shape[1]
    position_ids = (rollout.attention_mask.cumsum(1) - 1).clamp(min=0)  # [N, P+T]
    heard = []
    hook = model.get_output_embeddings().register_forward_pre_hook(lambda module, args: heard.append(args[0]))
    try:
        logits = model(input_ids=rollout.sequences[:, :-1], attention_mask=rollout.attention_mask[:, :-1],
                       position_ids=position_ids[:, :-1], use_cache=False, logits_to_keep=T).logits  # [N, T, V]
    finally:
        hook.remove()
    hidden = heard[0].reshape(N * T, -1)  # [N*T, H] the state before each completion token
    return _from_logits(logits.float() / temperature, hidden, rollout, value_head, with_entropy)


def _read_completion(base, hidden: torch.Tensor, rollout: Rollout, temperature: float, value_head, with_entropy: bool):
    """From the state before each completion token [N*T, H]: log-probs, entropy and values [N, T]."""
    N, T = rollout.sequences.shape[0], rollout.completion_mask.shape[1]
    logits = base.get_output_embeddings()(hidden).float().view(N, T, -1) / temperature  # [N, T, V]
    return _from_logits(logits, hidden, rollout, value_head, with_entropy)


def _from_logits(logits: torch.Tensor, hidden: torch.Tensor, rollout: Rollout, value_head, with_entropy: bool):
    """Log-probs of the completion tokens, entropy and values [N, T] from the tempered logits [N, T, V]."""
    N, T, P = rollout.sequences.shape[0], rollout.completion_mask.shape[1], rollout.prompt_length
    tokens = rollout.sequences[:, P:]  # [N, T]
    # log pi(y_t) = logit_y - logsumexp(logits): no [N, T, V] log-softmax kept for the backward pass
    logprobs = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # [N, T]
    entropy = _entropy(logits.detach()) if with_entropy else None  # [N, T], a metric only
    values = None if value_head is None else value_head(hidden.float()).view(N, T)  # [N, T]
    return logprobs, entropy, values


@torch.no_grad()
def _entropy(logits: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """H = -sum p log p per position, a few sequences at a time to bound memory. [N, T, V] -> [N, T]"""
    out = []
    for part in logits.split(chunk):
        log_p = F.log_softmax(part, dim=-1)
        out.append(-(log_p.exp() * log_p).sum(-1))
    return torch.cat(out)


def _adapter_input_casting_off(model):
    """Keep bf16 activations bf16 through fp32 LoRA weights (autocast does the matmul); peft would copy them to fp32."""
    if hasattr(model, "get_base_model"):
        from peft.helpers import disable_input_dtype_casting

        return disable_input_dtype_casting(model)
    return nullcontext()


def activation_bytes(model_config, rollout: Rollout) -> float:
    """A generous estimate of what one forward and backward pass over the whole rollout holds: the fp32 logits of
    the completion positions three times over (logits, their softmax, the gradient) and ~24 values per layer, token
    and hidden unit (attention and MLP inputs and outputs, in fp32)."""
    N, width = rollout.sequences.shape
    T = rollout.completion_mask.shape[1]
    logits = 3 * N * T * model_config.vocab_size * 4
    layers = 24 * N * width * model_config.hidden_size * model_config.num_hidden_layers * 4
    return float(logits + layers)
