"""Policy-gradient update of the generator against the reward model: step 3 of InstructGPT.

    python -m policy.train --algorithm rloo --steps 20 --kl-coef 0.05

Each step samples K completions for a few prompts (the rollout), scores them with the reward
model, subtracts beta times their KL to the frozen starting generator, and updates the policy:
  rloo       -A * log pi(y|x), A = R - mean of the prompt's other K-1 rewards (leave-one-out)
  reinforce  -A * log pi(y|x), A = R - b, b a moving average of past rewards
  ppo        clipped ratio objective on per-token GAE advantages, a learned value head,
             token rewards = -beta * KL per token, plus the reward model's score at the last token
Several GPUs: `accelerate launch -m policy.train ...` runs the same entry point per process.
"""

import copy
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from data import conversation, items, versions
from data.jobs import job_main
from policy.config import PolicyConfig
from policy.generate import Prompt, chat_inputs, completion_lengths, eos_token_ids, prompt_messages
from policy.models import load_generator, save_generator_version, with_lora_adapter
from policy.sampling import sample_tokens
from training import diagnostics, gate, model_config, pick_device, release_freed_memory
from training.precision import autocast, load_dtype, precision_for, use_bf16

EXAMPLES_SAVED = 8


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
                   max_prompt_tokens: int | None = None) -> Rollout:
    """K samples per prompt from the full tempered distribution (no top-p/top-k, so log-probs match).

    The policy continues each prompt's messages (the last `max_prompt_tokens` of them); the rollout keeps the
    prompt's text for the reward scorer.
    """
    inputs = chat_inputs(tokenizer, prompts, max_prompt_tokens).to(model.device)
    eos_ids = eos_token_ids(model, tokenizer)
    completion = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], k, max_new_tokens, temperature,
                               eos_ids, tokenizer.pad_token_id)  # [N, T]
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

    N, T, P, k = rollout.sequences.shape[0], rollout.completion_mask.shape[1], rollout.prompt_length, rollout.k
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live inside it
    decoder = base.get_decoder()
    position_ids = (rollout.attention_mask.cumsum(1) - 1).clamp(min=0)  # [N, P+T], left padding does not shift positions
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
    logits = base.get_output_embeddings()(hidden).float().view(N, T, -1) / temperature  # [N, T, V]
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


def sequence_rewards(scores: torch.Tensor, kl: torch.Tensor, ended: torch.Tensor, config: PolicyConfig) -> torch.Tensor:
    """R = r_phi(x, y) - beta * KL(pi || pi_ref)(y) - penalty * [y never ended].  All [N]; scores already standardised."""
    return scores - config.kl_coef * kl - config.no_eos_penalty * (~ended).float()


def standardised(scores: torch.Tensor, config: PolicyConfig) -> torch.Tensor:
    """The batch's reward-model scores as (r - mean) / std when normalize_rewards, else as they are. [N] -> [N]

    >>> standardised(torch.tensor([1.0, 2.0, 3.0]), PolicyConfig()).tolist()
    [-1.0, 0.0, 1.0]
    """
    if not config.normalize_rewards or scores.numel() < 2:
        return scores
    return (scores - scores.mean()) / scores.std().clamp(min=1e-6)


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """A_i = R_i - mean_{j != i} R_j within each prompt's K samples; each prompt's advantages sum to 0.

    >>> rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    R = rewards.view(-1, k)  # [B, K]
    baseline = (R.sum(1, keepdim=True) - R) / (k - 1)  # [B, K]
    return (R - baseline).flatten()  # [N]


def token_rewards(scores: torch.Tensor, kl_tokens: torch.Tensor, mask: torch.Tensor, ended: torch.Tensor,
                  config: PolicyConfig) -> torch.Tensor:
    """PPO's sparse rewards: -beta * KL on every token, plus the score (and no-EOS penalty) at the last one. [N, T]"""
    rewards = -config.kl_coef * kl_tokens * mask  # [N, T]
    last = (mask.sum(1) - 1).clamp(min=0).long()  # [N]
    rewards[torch.arange(len(last)), last] += scores - config.no_eos_penalty * (~ended).float()
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation with gamma = 1. All [N, T]; returns (advantages, returns)."""
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + next_value - values[:, t]
        next_advantage = (delta + lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t] * mask[:, t]
    return advantages, advantages + values


def held_out_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) of each completion sampled from pi, summed over its tokens with Schulman's k3 estimator
    (r - 1 - log r, r = pi_ref / pi): unbiased like the plain log-ratio, never negative, and of lower variance, so a
    held-out figure is not a negative KL on a few samples.

    >>> held_out_kl(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, -2.0]]), torch.ones(1, 2)).tolist()
    [0.0]
    """
    log_ratio = ref_logprobs - logprobs  # [N, T] log(pi_ref / pi) at the sampled tokens
    return ((log_ratio.exp() - 1 - log_ratio) * mask).sum(1)  # [N]


def activation_bytes(model_config, rollout: Rollout) -> float:
    """A generous estimate of what one forward and backward pass over the whole rollout holds: the fp32 logits of
    the completion positions three times over (logits, their softmax, the gradient) and ~24 values per layer, token
    and hidden unit (attention and MLP inputs and outputs, in fp32)."""
    N, width = rollout.sequences.shape
    T = rollout.completion_mask.shape[1]
    logits = 3 * N * T * model_config.vocab_size * 4
    layers = 24 * N * width * model_config.hidden_size * model_config.num_hidden_layers * 4
    return float(logits + layers)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


class PolicyTrainer:
    """Holds the policy, its reference, the reward model and the optimizer; `step()` is one update."""

    def __init__(self, model, tokenizer, scorer, config: PolicyConfig):
        self.config = config
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.device = model.device
        self.bf16 = use_bf16(config.bf16, self.device, model.config)
        if config.lora:
            self.policy = with_lora_adapter(model, config.lora_rank, bf16_base=self.bf16)
            self.reference = None  # the base model with the adapter switched off
            # sampling token by token from a copy with the adapter merged in: peft's per-layer adapter calls made
            # each decode step ~35% slower; the copy is made once and refreshed in place (no per-step allocation)
            self.sampler = copy.deepcopy(self.policy).merge_and_unload().requires_grad_(False) if self.bf16 else None
        else:
            self.policy = model
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
            self.sampler = None
        self.policy.eval()  # no dropout: rollouts and updates see the same function
        self.value_head = None
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if config.algorithm == "ppo":
            self.value_head = torch.nn.Linear(model.config.hidden_size, 1).to(self.device)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)
            params += list(self.value_head.parameters())
        # fused: one kernel per step and no temporaries the size of all parameters (foreach made ~0.5 GB of them)
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0, fused=True)
        self.baseline = None  # reinforce's moving average

    @classmethod
    def evaluator(cls, policy, reference, tokenizer, scorer, config: PolicyConfig) -> "PolicyTrainer":
        """A trainer that only evaluates a policy trained elsewhere (DPO) against its reference (None: the LoRA
        adapter switched off): `evaluate` and `kl_to_reference`, sampling from the policy as it is."""
        self = cls.__new__(cls)
        self.config, self.tokenizer, self.scorer, self.device = config, tokenizer, scorer, policy.device
        self.bf16 = use_bf16(config.bf16, self.device, policy.config)
        self.policy, self.reference, self.sampler, self.value_head = policy, reference, None, None
        return self

    def autocast(self):
        return autocast(self.device, self.bf16)

    def reference_context(self):
        return self.policy.disable_adapter() if self.config.lora else nullcontext()

    def micro_batches(self, rollout: Rollout) -> list[tuple[int, int]]:
        """(start, stop) rows of each forward and backward pass: whole prompts' K samples, so leave-one-out holds."""
        rows, n = self.micro_batch_prompts(rollout) * self.config.k, rollout.sequences.shape[0]
        return [(start, min(start + rows, n)) for start in range(0, n, rows)]

    def micro_batch_prompts(self, rollout: Rollout) -> int:
        """The configured number, or automatically: one prompt on a CPU; on a GPU (bound by kernel launches, not
        memory, for a small model) all of the rollout's prompts when their activations fit in half the free memory."""
        if self.config.micro_batch_prompts:
            return self.config.micro_batch_prompts
        prompts = rollout.sequences.shape[0] // self.config.k
        if self.device.type != "cuda":
            return 1
        free, _ = torch.cuda.mem_get_info(self.device)
        return prompts if activation_bytes(self.policy.config, rollout) <= free / 2 else 1

    def micro_logprobs(self, model, rollout: Rollout, start: int, stop: int, value_head=None, with_entropy=True):
        """`completion_logprobs` of rows start..stop-1, padded back to the rollout's T columns (zeros after the
        micro-batch's longest completion, which the completion mask leaves out anyway)."""
        T = rollout.completion_mask.shape[1]
        with self.autocast():
            out = completion_logprobs(model, rollout.rows(start, stop), self.config.temperature, value_head, with_entropy)
        return tuple(None if x is None else F.pad(x, (0, T - x.shape[1])) for x in out)

    @torch.no_grad()
    def logprobs_without_grad(self, model, rollout: Rollout) -> torch.Tensor:
        """Completion log-probs [N, T], a micro-batch at a time."""
        return torch.cat([self.micro_logprobs(model, rollout, a, b, with_entropy=False)[0] for a, b in self.micro_batches(rollout)])

    @torch.no_grad()
    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        with self.reference_context():
            return self.logprobs_without_grad(self.reference or self.policy, rollout)

    def rollout(self, prompts: list[Prompt], seed: int, policy=None) -> Rollout:
        torch.manual_seed(seed)
        with self.autocast():
            rollout = sample_rollout(policy or self.sampling_model(), self.tokenizer, prompts, self.config.k,
                                     self.config.max_new_tokens, self.config.temperature, self.config.max_prompt_tokens)
        release_freed_memory()  # the KV cache
        return rollout

    @torch.no_grad()
    def sampling_model(self):
        """The policy as a plain model to sample from: with LoRA in bf16, the merged copy brought up to date in place
        (W = W_base + scale * B A per adapted layer)."""
        if self.sampler is None:
            return self.policy
        from peft.tuners.lora import LoraLayer

        for name, layer in self.policy.base_model.model.named_modules():
            if isinstance(layer, LoraLayer):
                weight = self.sampler.get_submodule(name).weight
                weight.copy_(layer.base_layer.weight).add_(layer.get_delta_weight("default").to(weight.dtype))
        return self.sampler

    def step(self, prompts: list[Prompt], seed: int) -> dict:
        """One rollout and one update (several for PPO). Returns namespaced metrics."""
        c, timings = self.config, {}
        started = time.perf_counter()
        rollout = self.rollout(prompts, seed)
        timings["time/generation"] = time.perf_counter() - started
        started = time.perf_counter()
        mask = rollout.completion_mask.float()  # [N, T]
        ref_logprobs = self.reference_logprobs(rollout)  # [N, T], once per rollout
        raw = self.scorer.score(rollout.prompts, rollout.texts).to(self.device)  # [N] on the reward model's scale
        scores = standardised(raw, c)  # [N]
        timings["time/scoring"] = time.perf_counter() - started
        if c.algorithm == "ppo":
            metrics = self._ppo_update(rollout, mask, ref_logprobs, scores, timings)
        else:
            metrics = self._reinforce_update(rollout, mask, ref_logprobs, scores, timings)
        lengths = mask.sum(1)
        metrics.update({"reward/mean": raw.mean().item(), "reward/std": raw.std().item(),
                        "policy/reward_length_corr": diagnostics.correlation(raw.tolist(), lengths.tolist()),
                        "policy/length": lengths.mean().item(), "policy/ended": rollout.ended.float().mean().item(),
                        **timings, "time/step": sum(timings.values()),
                        "speed/completion_tokens_per_s": lengths.sum().item() / sum(timings.values())})
        return metrics

    def _reinforce_update(self, rollout, mask, ref_logprobs, scores, timings) -> dict:
        """One REINFORCE/RLOO update, a micro-batch of whole prompts at a time: each backward pass frees its
        activations, and the gradients add up to those of the whole batch's mean loss."""
        c, N = self.config, rollout.sequences.shape[0]
        # reinforce: the moving average before this step; at the first step the mean reward of the whole batch, which
        # the scores alone give, since the policy is still the reference (KL 0) and micro-batches see only their rows
        baseline = self.baseline if self.baseline is not None else (
            sequence_rewards(scores, torch.zeros_like(scores), rollout.ended, c).mean().item())
        timings["time/forward"] = timings["time/backward"] = 0.0
        parts = {"kl": [], "R": [], "A": [], "entropy": [], "loss": 0.0}
        for a, b in self.micro_batches(rollout):
            started = time.perf_counter()
            m = mask[a:b]  # [n, T]
            logprobs, entropy, _ = self.micro_logprobs(self.policy, rollout, a, b)  # [n, T] with grad
            kl = ((logprobs.detach() - ref_logprobs[a:b]) * m).sum(1)  # [n] per-sequence KL estimate on the sampled tokens
            R = sequence_rewards(scores[a:b], kl, rollout.ended[a:b], c)  # [n]
            if c.algorithm == "rloo":
                A = rloo_advantages(R, c.k)  # [n], whole prompts in every micro-batch
            else:
                A = R - baseline
            loss = -(A.detach() * (logprobs * m).sum(1)).sum() / N  # -A * log pi(y|x), this micro-batch's share of the mean
            timings["time/forward"] += time.perf_counter() - started
            started = time.perf_counter()
            loss.backward()
            timings["time/backward"] += time.perf_counter() - started
            for name, value in (("kl", kl), ("R", R), ("A", A.detach()), ("entropy", entropy.detach())):
                parts[name].append(value)
            parts["loss"] += loss.item()
        started = time.perf_counter()
        self._step()
        timings["time/backward"] += time.perf_counter() - started
        kl, R, A, entropy = (torch.cat(parts[name]) for name in ("kl", "R", "A", "entropy"))
        if c.algorithm == "reinforce":
            self.baseline = R.mean().item() if self.baseline is None else (
                c.baseline_momentum * self.baseline + (1 - c.baseline_momentum) * R.mean().item())
        return {"train/loss": parts["loss"], "policy/kl": kl.mean().item(), "policy/entropy": masked_mean(entropy, mask).item(),
                "reward/total": R.mean().item(), "policy/advantage_std": A.std().item()}

    def _ppo_update(self, rollout, mask, ref_logprobs, scores, timings) -> dict:
        c = self.config
        started = time.perf_counter()
        with torch.no_grad():
            old = [self.micro_logprobs(self.policy, rollout, a, b, self.value_head, with_entropy=False)
                   for a, b in self.micro_batches(rollout)]
        old_logprobs, old_values = torch.cat([o[0] for o in old]), torch.cat([o[2] for o in old])  # [N, T]
        kl_tokens = old_logprobs - ref_logprobs  # [N, T]
        rewards = token_rewards(scores, kl_tokens, mask, rollout.ended, c)  # [N, T]
        advantages, returns = gae(rewards, old_values, mask, c.gae_lambda)  # [N, T]
        advantages = whiten(advantages, mask)
        timings["time/forward"], timings["time/backward"] = time.perf_counter() - started, 0.0
        tokens = mask.sum().clamp(min=1)  # the denominator of every masked mean over the whole batch
        stats = []
        for epoch in range(c.ppo_epochs):
            sums = {"ratio": 0.0, "clipfrac": 0.0, "policy": 0.0, "value": 0.0, "entropy": 0.0}
            for a, b in self.micro_batches(rollout):
                started = time.perf_counter()
                m = mask[a:b]
                logprobs, entropy, values = self.micro_logprobs(self.policy, rollout, a, b, self.value_head)
                ratio = torch.exp(logprobs - old_logprobs[a:b])  # [n, T], 1 on the first epoch
                adv = advantages[a:b]
                policy_loss = (torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip_range, 1 + c.clip_range)) * m).sum() / tokens
                clipped_values = old_values[a:b] + (values - old_values[a:b]).clamp(-c.value_clip_range, c.value_clip_range)
                value_loss = 0.5 * (torch.max((values - returns[a:b]) ** 2, (clipped_values - returns[a:b]) ** 2) * m).sum() / tokens
                loss = policy_loss + c.value_coef * value_loss  # this micro-batch's share of the batch's masked means
                timings["time/forward"] += time.perf_counter() - started
                started = time.perf_counter()
                loss.backward()
                timings["time/backward"] += time.perf_counter() - started
                for name, value in (("ratio", ratio.detach()), ("clipfrac", ((ratio.detach() - 1).abs() > c.clip_range).float()),
                                    ("entropy", entropy.detach())):
                    sums[name] += ((value * m).sum() / tokens).item()
                sums["policy"] += policy_loss.item()
                sums["value"] += value_loss.item()
            started = time.perf_counter()
            self._step()
            timings["time/backward"] += time.perf_counter() - started
            stats.append(sums)
        explained = 1 - masked_mean((returns - old_values) ** 2, mask) / masked_mean((returns - masked_mean(returns, mask)) ** 2, mask).clamp(min=1e-8)
        return {"train/loss": stats[-1]["policy"], "train/value_loss": stats[-1]["value"], "ppo/ratio_first_epoch": stats[0]["ratio"],
                "ppo/ratio": stats[-1]["ratio"], "ppo/clipfrac": stats[-1]["clipfrac"], "ppo/explained_variance": explained.item(),
                "policy/kl": (kl_tokens * mask).sum(1).mean().item(), "policy/entropy": stats[0]["entropy"],
                "reward/total": rewards.sum(1).mean().item(), "policy/advantage_std": advantages[mask.bool()].std().item()}

    def _step(self) -> None:
        """Clip the accumulated gradients, step, and clear them."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        release_freed_memory()  # the step's gradients and activations, so the allocator does not grow step by step

    @torch.no_grad()
    def kl_to_reference(self, prompts: list[Prompt], seed: int) -> float:
        """KL(pi || pi_ref) per completion, estimated on the policy's own samples."""
        new = self.rollout(prompts, seed)
        return held_out_kl(self.logprobs_without_grad(self.policy, new), self.reference_logprobs(new), new.completion_mask).mean().item()

    @torch.no_grad()
    def evaluate(self, prompts: list[Prompt], seed: int) -> dict:
        """The current and the starting policy on the same held-out prompts and seed: rewards, KL, win rate, and
        whether the gain is length (lengths, capped shares, reward-length correlation, length-controlled win rate)."""
        k = self.config.k
        new = self.rollout(prompts, seed)
        with self.reference_context():
            old = self.rollout(prompts, seed, policy=self.reference or self.policy)
        new_scores = self.scorer.score(new.prompts, new.texts).float().cpu()  # [N]
        old_scores = self.scorer.score(old.prompts, old.texts).float().cpu()  # [N]
        new_logprobs = self.logprobs_without_grad(self.policy, new)
        kl = held_out_kl(new_logprobs, self.reference_logprobs(new), new.completion_mask)  # [N]
        new_lengths, old_lengths = new.completion_mask.sum(1).float().cpu(), old.completion_mask.sum(1).float().cpu()  # [N]
        diff = new_scores - old_scores  # paired: same prompt, same sample index
        # every new sample against every old one of the same prompt: [B, K, K] reward and length differences
        reward_gain = (new_scores.view(-1, k, 1) - old_scores.view(-1, 1, k)).flatten().tolist()
        length_gain = (new_lengths.view(-1, k, 1) - old_lengths.view(-1, 1, k)).flatten().tolist()
        biggest = diff.argsort(descending=True)[:EXAMPLES_SAVED].tolist()
        examples = [{"prompt": new.prompts[i], "before": old.texts[i], "before_reward": round(old_scores[i].item(), 3),
                     "after": new.texts[i], "after_reward": round(new_scores[i].item(), 3)} for i in biggest]
        return {"val/reward_before": old_scores.mean().item(), "val/reward_after": new_scores.mean().item(),
                "val/kl": kl.mean().item(), "val/win_rate": ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item(),
                "val/win_pairs": len(diff),
                **dict(zip(("val/lc_win_rate", "val/lc_pairs"), diagnostics.length_controlled_win_rate(
                    reward_gain, length_gain, tolerance=max(2.0, 0.1 * torch.cat([new_lengths, old_lengths]).mean().item())))),
                "val/reward_length_corr": diagnostics.correlation(new_scores.tolist(), new_lengths.tolist()),
                "val/length_before": old_lengths.mean().item(), "val/length_after": new_lengths.mean().item(),
                "val/capped_before": (~old.ended).float().mean().item(), "val/capped_after": (~new.ended).float().mean().item(),
                "examples": examples}

    def trained_model(self):
        """What to save: the LoRA adapter (PeftModel) or the full model."""
        return self.policy


def shaped_to_the_rankings(config: PolicyConfig, limits: dict, log=print) -> PolicyConfig:
    """The length cap and no-EOS penalty made consistent with what the reward model learned from.

    A cap shorter than the one the ranked completions were sampled with cuts answers in a way the reward model
    never saw, and a penalty for being cut then dominates the reward (in one measured loop 71% of the starting
    samples hit a 64-token cap and the update mostly learned to stop early). So the cap is raised to the
    rankings' cap, and when annotators ranked cut completions the reward model already scores being cut: no penalty.
    """
    changes = {}
    longest = limits.get("max_new_tokens")
    if longest and config.max_new_tokens < longest:
        changes["max_new_tokens"] = longest
        log(f"max_new_tokens raised from {config.max_new_tokens} to {longest}: the ranked completions were sampled with "
            f"up to {longest} tokens, and a shorter cap would cut answers where the reward model never saw them cut")
    if limits.get("truncated_share", 0) > 0 and config.no_eos_penalty:
        changes["no_eos_penalty"] = 0.0
        log(f"no-EOS penalty off (was {config.no_eos_penalty}): {limits['truncated_share']:.0%} of the ranked completions "
            "were cut at their cap, so the reward model already scores cut answers")
    return replace(config, **changes) if changes else config


def split_prompts(prompts: list[Prompt], eval_prompts: int) -> tuple[list[Prompt], list[Prompt]]:
    if len(prompts) <= eval_prompts:
        raise ValueError(f"the prompt set has {len(prompts)} prompts: need more than the {eval_prompts} held out for evaluation")
    return prompts[:-eval_prompts] if eval_prompts else prompts, prompts[-eval_prompts:] if eval_prompts else []


def prompt_batches(prompts: list[Prompt], per_step: int, steps: int, seed: int):
    """Prompts for each step: passes over the shuffled training prompts."""
    rng, order = random.Random(seed), []
    for _ in range(steps):
        if len(order) < per_step:
            order += rng.sample(prompts, len(prompts))
        yield order[:per_step]
        order = order[per_step:]


def train_policy(model, tokenizer, scorer, train_prompts, eval_prompts, config: PolicyConfig,
                 on_step=lambda step, total, metrics: None, on_phase=lambda name: None):
    """The loop on in-memory prompts. Returns (trainer, metrics). `on_phase` hears when the held-out evaluation starts."""
    torch.manual_seed(config.seed)
    trainer = PolicyTrainer(model, tokenizer, scorer, config)
    history = []
    for step, prompts in enumerate(prompt_batches(train_prompts, config.prompts_per_step, config.steps, config.seed), start=1):
        metrics = trainer.step(prompts, seed=config.seed * 100_003 + step)
        history.append(metrics)
        on_step(step, config.steps, metrics)
    final = {"steps": config.steps, "reward/first_steps": _mean(history[:3], "reward/mean"),
             "reward/last_steps": _mean(history[-3:], "reward/mean"), "time/step_median": sorted(h["time/step"] for h in history)[len(history) // 2]}
    if eval_prompts:
        on_phase(f"evaluating on {len(eval_prompts)} held-out prompts")
        final.update(trainer.evaluate(eval_prompts, seed=config.seed + 1))
    return trainer, final


def _mean(history: list[dict], key: str) -> float:
    return sum(h[key] for h in history) / max(1, len(history))


def run_policy_training(db, config: PolicyConfig, job) -> dict:
    """Job body: load the generator and the reward model, train, save and register the new generator version."""
    from rm.score import RewardScorer

    start = versions.version_or_active(db, "generator", config.generator_version)
    reward = versions.version_or_active(db, "reward", config.reward_version)
    config = replace(config, generator_version=start["id"], reward_version=reward["id"])  # the version records what it used
    prompts = [conversation.as_messages(p["text"], p["messages"]) for p in items.prompts_of_set(db, config.prompt_set)]
    train_prompts, eval_prompts = split_prompts(prompts, config.eval_prompts)
    config = shaped_to_the_rankings(config, items.ranked_generation_limits(db), job.log)
    job.log(f"{config.algorithm}: {start['name']} against {reward['name']} on {len(train_prompts)} prompts "
            f"({len(eval_prompts)} held out); LoRA {'on' if config.lora else 'off'}")
    device = pick_device(config.device)
    start_config = model_config(start["path"])
    precision = precision_for(config.bf16, device, start_config)
    job.fact("precision", str(precision))
    job.phase("loading the generator and the reward model")
    model, tokenizer = load_generator(start["path"], str(device), load_dtype(config, device, start_config))
    full_weights = hasattr(model, "merge_and_unload")  # starting from an adapter: merge it, save full weights
    if full_weights:
        model = model.merge_and_unload()
    scorer = RewardScorer(reward["path"], str(device))

    def on_step(step, total, metrics):
        job.metrics(step, metrics)
        job.step_progress(step, total, f"reward {metrics['reward/mean']:.3f} · KL {metrics['policy/kl']:.3f}")

    job.phase(f"training: {config.steps} steps of {config.prompts_per_step} prompts x {config.k} samples")
    trainer, metrics = train_policy(model, tokenizer, scorer, train_prompts, eval_prompts, config, on_step, job.phase)
    job.phase("saving")
    name = config.name or versions.default_version_name("policy")
    trained = trainer.trained_model()
    if full_weights and config.lora:
        trained = trained.merge_and_unload()

    activate, activation = gate.decide(config.activate, gate.generator_gate(metrics))
    version_id = save_generator_version(db, trained, tokenizer, name, start["id"], config, metrics, "policy_config.json", activate)
    job.log(activation)
    job.log(f"saved {name}: reward {metrics.get('val/reward_before', float('nan')):.3f} -> {metrics.get('val/reward_after', float('nan')):.3f}, "
            f"win rate {metrics.get('val/win_rate', float('nan')):.2f} ({diagnostics.similar_length_text(metrics)}), "
            f"KL {metrics.get('val/kl', float('nan')):.3f}, capped {metrics.get('val/capped_before', float('nan')):.0%} -> "
            f"{metrics.get('val/capped_after', float('nan')):.0%}")
    for _, line in diagnostics.verdict(metrics):
        job.log(line)
    return {"version": version_id, "name": name, "activation": activation, "precision": str(precision),
            **{k: round(v, 4) for k, v in metrics.items() if k.startswith("val/") and isinstance(v, float)}}


if __name__ == "__main__":
    raise SystemExit(job_main("train_policy", PolicyConfig, run_policy_training))
