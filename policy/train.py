"""Policy-gradient update of the generator against the reward model: step 3 of InstructGPT.

    python -m policy.train --algorithm rloo --steps 20 --kl-coef 0.05

Each step samples K completions for a few prompts (the rollout), scores them with the reward
model (or an AI judge's votes: `--judge-remote`, policy/judge.py:JudgeReward), subtracts beta times their KL to the frozen starting generator, and updates the policy:
  rloo       -A * log pi(y|x), A = R - mean of the prompt's other K-1 rewards (leave-one-out)
  reinforce  -A * log pi(y|x), A = R - b, b a moving average of past rewards
  grpo       -A * log pi(y|x) / |y|, A = (R - mean of the prompt's K rewards) / their std (group-normalised)
  dr_grpo    -A * log pi(y|x) / max_new_tokens, A = R - mean of the prompt's K rewards (Dr. GRPO: no std, no length bias)
  ppo        clipped ratio objective on per-token GAE advantages, a learned value head,
             token rewards = -beta * KL per token, plus the reward model's score at the last token
Several GPUs: `accelerate launch -m policy.train ...` runs the same entry point per process.

The parts, in the order every trainer lists them (rm/train.py, policy/sft.py, policy/dpo.py, here):
  config      policy/config.py:PolicyConfig
  data        a prompt set's prompts, the last ones held out (split_prompts, prompt_batches); the rollout of each step
              (policy/rollout.py)
  loss        sequence_rewards, rloo_advantages, group_advantages, sequence_logprob (rloo, reinforce, grpo, dr_grpo);
              token_rewards, gae, the clipped ratio (ppo)
  loop        fit(model, tokenizer, scorer, train_prompts, eval_prompts, config, on_step) -> (trainer, metrics);
              PolicyTrainer.step is one update
  evaluation  PolicyEvaluator.evaluate (policy/evaluation.py): the trained and the starting policy on held-out prompts
  job entry   run_job(db, config, job), run by `python -m policy.train`
"""

import copy
import random
import time
from dataclasses import replace

import torch

from data import conversation, items, spot_checks, versions
from data.jobs import job_main
from policy.config import JudgeConfig, PolicyConfig, held_out_problem
from policy.evaluation import PolicyEvaluator
from policy.generate import Prompt
from policy.judge import Judge, JudgeReward, set_guidelines
from policy.models import load_generator, save_generator_version, with_lora_adapter
from policy.rollout import Rollout
from training import checkpointing, diagnostics, gate, model_config, release_freed_memory, sharding_problem
from training.parallel import DataParallel
from training.precision import load_dtype, precision_for, use_bf16

GROUP_NORMALISED = ("grpo", "dr_grpo")  # advantages against the mean of the prompt's K samples (group_advantages)


def sequence_rewards(scores: torch.Tensor, kl: torch.Tensor, ended: torch.Tensor, config: PolicyConfig) -> torch.Tensor:
    """R = r_phi(x, y) - beta * KL(pi || pi_ref)(y) - penalty * [y never ended].  All [N]; scores already standardised."""
    return scores - config.kl_coef * kl - config.no_eos_penalty * (~ended).float()


def standardised(scores: torch.Tensor, config: PolicyConfig, total=lambda x: x) -> torch.Tensor:
    """The batch's reward-model scores as (r - mean) / std when normalize_rewards, else as they are. [N] -> [N]
    `total`: the sum over the processes that share the batch (DataParallel.total), so mean and std are the whole batch's.

    >>> standardised(torch.tensor([1.0, 2.0, 3.0]), PolicyConfig()).tolist()
    [-1.0, 0.0, 1.0]
    """
    n = total(torch.tensor([float(scores.numel())], device=scores.device))  # [1]
    if not config.normalize_rewards or n.item() < 2:
        return scores
    mean = total(scores.sum().view(1)) / n  # [1]
    std = (total(((scores - mean) ** 2).sum().view(1)) / (n - 1)).sqrt()  # [1], unbiased like torch.std
    return (scores - mean) / std.clamp(min=1e-6)


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """A_i = R_i - mean_{j != i} R_j within each prompt's K samples; each prompt's advantages sum to 0.

    >>> rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    R = rewards.view(-1, k)  # [B, K]
    baseline = (R.sum(1, keepdim=True) - R) / (k - 1)  # [B, K]
    return (R - baseline).flatten()  # [N]


def group_advantages(rewards: torch.Tensor, k: int, scale: bool) -> torch.Tensor:
    """A_i = R_i - mean of its prompt's K rewards, divided by their std when `scale` (GRPO; Dr. GRPO does not: the std
    weighs prompts whose samples all score alike the most). A prompt whose K rewards are equal gets 0, not NaN.

    >>> group_advantages(torch.tensor([1.0, 3.0, 5.0, 5.0]), 2, scale=False).tolist()
    [-1.0, 1.0, 0.0, 0.0]
    >>> [round(a, 3) for a in group_advantages(torch.tensor([1.0, 3.0, 5.0, 5.0]), 2, scale=True).tolist()]
    [-0.707, 0.707, 0.0, 0.0]
    """
    R = rewards.view(-1, k)  # [B, K]
    A = R - R.mean(1, keepdim=True)  # [B, K]
    if scale:
        A = A / (R.std(1, keepdim=True) + 1e-4)  # [B, K], the same epsilon as TRL's GRPO
    return A.flatten()  # [N]


def sequence_logprob(logprobs: torch.Tensor, mask: torch.Tensor, config: PolicyConfig) -> torch.Tensor:
    """The completion's log-probability as each algorithm weighs its tokens. [N, T], [N, T] -> [N]
      rloo, reinforce: the sum over its tokens, log pi(y|x)
      grpo:            the mean over its tokens (1/|y|: a long answer's tokens each count less, a bias towards
                       longer wrong answers and shorter right ones that Dr. GRPO points out)
      dr_grpo:         the sum over max_new_tokens (a constant: every token counts the same whatever its answer's length)

    >>> lp, m = torch.tensor([[-1.0, -1.0, 0.0], [-2.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    >>> [sequence_logprob(lp, m, PolicyConfig(algorithm=a, max_new_tokens=4)).tolist() for a in ("rloo", "grpo", "dr_grpo")]
    [[-2.0, -2.0], [-1.0, -2.0], [-0.5, -0.5]]
    """
    total = (logprobs * mask).sum(1)  # [N]
    if config.algorithm == "grpo":
        return total / mask.sum(1).clamp(min=1)
    if config.algorithm == "dr_grpo":
        return total / config.max_new_tokens
    return total


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


def masked_mean(x: torch.Tensor, mask: torch.Tensor, total=lambda x: x) -> torch.Tensor:
    """The mean of x over the mask's tokens; `total`: over every process's tokens (DataParallel.total)."""
    return (total((x * mask).sum().view(1)) / total(mask.sum().view(1)).clamp(min=1)).squeeze(0)


def whiten(x: torch.Tensor, mask: torch.Tensor, total=lambda x: x) -> torch.Tensor:
    mean = masked_mean(x, mask, total)
    var = masked_mean((x - mean) ** 2, mask, total)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


class PolicyTrainer(PolicyEvaluator):
    """The policy, its reference, the reward model and the optimizer; `step()` is one update. Sampling, the
    micro-batched log-probs and the held-out evaluation are the `PolicyEvaluator`'s."""

    def __init__(self, model, tokenizer, scorer, config: PolicyConfig, parallel: DataParallel | None = None):
        """`parallel`: under `accelerate launch`, this process's part of a data-parallel update (training/parallel.py):
        each process samples and scores its share of a step's prompts, statistics over the batch and the gradients
        are summed or averaged over the processes, and all replicas take the same step. Sharded (full weights), the
        policy and its reference are split across the processes (FSDP2), which run every forward pass together."""
        self.config = config
        self.parallel = parallel or DataParallel(str(model.device), alone=True)
        if self.parallel.sharded and (problem := sharding_problem("shard", config.lora)):
            raise ValueError(problem)
        bf16 = use_bf16(config.bf16, model.device, model.config)
        if config.lora:
            policy = with_lora_adapter(model, config.lora_rank, bf16_base=bf16)
            reference = None  # the base model with the adapter switched off
            # sampling token by token from a copy with the adapter merged in: peft's per-layer adapter calls made
            # each decode step ~35% slower; the copy is made once and refreshed in place (no per-step allocation)
            self.sampler = copy.deepcopy(policy).merge_and_unload().requires_grad_(False) if bf16 else None
        else:
            policy = model
            reference = copy.deepcopy(model).eval().requires_grad_(False)
            self.sampler = None
        super().__init__(policy, reference, tokenizer, scorer, k=config.k, max_new_tokens=config.max_new_tokens,
                         temperature=config.temperature, bf16=bf16, max_prompt_tokens=config.max_prompt_tokens,
                         micro_batch_prompts=config.micro_batch_prompts, parallel=self.parallel)
        self.policy.eval()  # no dropout: rollouts and updates see the same function
        if config.gradient_checkpointing:
            checkpointing.enable(self.policy)
        self.value_head = None
        if config.algorithm == "ppo":
            self.value_head = torch.nn.Linear(model.config.hidden_size, 1).to(self.device)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)
        self.parallel.prepare(self.policy)  # the first process's weights (and LoRA's random start) everywhere
        if self.parallel.sharded:
            self.parallel.prepare(self.reference, frozen=True)
        if self.value_head is not None:
            self.parallel.prepare(self.value_head, add=True)
        params = [p for p in self.policy.parameters() if p.requires_grad]  # after sharding: its shards
        params += list(self.value_head.parameters()) if self.value_head is not None else []
        # fused: one kernel per step and no temporaries the size of all parameters (foreach made ~0.5 GB of them)
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0, fused=True)
        self.baseline = None  # reinforce's moving average

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
        """One rollout and one update (several for PPO). Returns namespaced metrics (this process's, under several)."""
        started = time.perf_counter()
        rollout = self.rollout(prompts, seed)
        return self.update(rollout, {"time/generation": time.perf_counter() - started})

    def update(self, rollout: Rollout, timings: dict | None = None) -> dict:
        """Score this process's rollout and update the policy on it (with the other processes' rollouts, under several)."""
        c, timings = self.config, timings if timings is not None else {}
        started = time.perf_counter()
        mask = rollout.completion_mask.float()  # [N, T]
        ref_logprobs = self.reference_logprobs(rollout)  # [N, T], once per rollout
        raw = self.scorer.score(rollout.prompts, rollout.texts).to(self.device)  # [N] on the reward model's (or judge's) scale
        scores = standardised(raw, c, self.parallel.total)  # [N], over the whole batch
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
        if isinstance(self.scorer, JudgeReward):
            metrics["reward/judge_readable"] = self.scorer.last_readable_share
        return metrics

    def _reinforce_update(self, rollout, mask, ref_logprobs, scores, timings) -> dict:
        """One REINFORCE/RLOO update, a micro-batch of whole prompts at a time: each backward pass frees its
        activations, and the gradients add up to those of the whole batch's mean loss."""
        c, total = self.config, self.parallel.total
        rows = torch.tensor([float(rollout.sequences.shape[0])], device=self.device)  # [1] this process's rows
        N = total(rows).item() / self.parallel.processes  # the rows a process has on average: the mean loss's share
        # reinforce: the moving average before this step; at the first step the mean reward of the whole batch, which
        # the scores alone give, since the policy is still the reference (KL 0) and micro-batches see only their rows
        baseline = self.baseline if self.baseline is not None else (
            self._batch_mean(sequence_rewards(scores, torch.zeros_like(scores), rollout.ended, c)))
        timings["time/forward"] = timings["time/backward"] = 0.0
        parts = {"kl": [], "R": [], "A": [], "entropy": [], "loss": 0.0}
        for a, b in self.micro_batches(rollout):
            started = time.perf_counter()
            m = mask[a:b]  # [n, T]
            with checkpointing.gradient_pass(self.policy, c.gradient_checkpointing):
                logprobs, entropy, _ = self.micro_logprobs(self.policy, rollout, a, b)  # [n, T] with grad
            kl = ((logprobs.detach() - ref_logprobs[a:b]) * m).sum(1)  # [n] per-sequence KL estimate on the sampled tokens
            R = sequence_rewards(scores[a:b], kl, rollout.ended[a:b], c)  # [n]
            if c.algorithm == "rloo":
                A = rloo_advantages(R, c.k)  # [n], whole prompts in every micro-batch
            elif c.algorithm in GROUP_NORMALISED:
                A = group_advantages(R, c.k, scale=c.algorithm == "grpo")  # [n]
            else:
                A = R - baseline
            loss = -(A.detach() * sequence_logprob(logprobs, m, c)).sum() / N  # -A * log pi(y|x), this micro-batch's share of the mean
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
            mean_R = self._batch_mean(R)
            self.baseline = mean_R if self.baseline is None else (
                c.baseline_momentum * self.baseline + (1 - c.baseline_momentum) * mean_R)
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
        advantages = whiten(advantages, mask, self.parallel.total)
        timings["time/forward"], timings["time/backward"] = time.perf_counter() - started, 0.0
        # the denominator of every masked mean over the whole batch: its tokens over all processes, per process, as
        # the processes' gradients are averaged
        tokens = (self.parallel.total(mask.sum().view(1)) / self.parallel.processes).squeeze(0).clamp(min=1)
        stats = []
        for epoch in range(c.ppo_epochs):
            sums = {"ratio": 0.0, "clipfrac": 0.0, "policy": 0.0, "value": 0.0, "entropy": 0.0}
            for a, b in self.micro_batches(rollout):
                started = time.perf_counter()
                m = mask[a:b]
                with checkpointing.gradient_pass(self.policy, c.gradient_checkpointing):
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

    def _batch_mean(self, values: torch.Tensor) -> float:
        """The mean of per-row values over the whole batch (every process's rows). [n] -> float"""
        total = self.parallel.total(torch.stack([values.sum(), torch.tensor(float(values.numel()), device=values.device)]))
        return (total[0] / total[1]).item()

    def _step(self) -> None:
        """Average the accumulated gradients over the processes, clip them, step, and clear them."""
        self.parallel.average_gradients()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.parallel.clip_gradients(params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        release_freed_memory()  # the step's gradients and activations, so the allocator does not grow step by step

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
    if problem := held_out_problem(len(prompts), eval_prompts):
        raise ValueError(problem)
    return prompts[:-eval_prompts] if eval_prompts else prompts, prompts[-eval_prompts:] if eval_prompts else []


def prompt_batches(prompts: list[Prompt], per_step: int, steps: int, seed: int):
    """Prompts for each step: passes over the shuffled training prompts."""
    rng, order = random.Random(seed), []
    for _ in range(steps):
        if len(order) < per_step:
            order += rng.sample(prompts, len(prompts))
        yield order[:per_step]
        order = order[per_step:]


def fit(model, tokenizer, scorer, train_prompts, eval_prompts, config: PolicyConfig,
        on_step=lambda step, total, metrics: None, on_phase=lambda name: None, parallel: DataParallel | None = None):
    """The loop on in-memory prompts. Returns (trainer, metrics). `on_phase` hears when the held-out evaluation starts.

    Under `accelerate launch` (`parallel`), every process walks the same prompt batches and samples its share of each
    (a prompt's K samples in one process); the metrics are averaged over the processes and only the first one reports
    and evaluates on the held-out prompts (the replicas are equal). Sharded, every process evaluates, on the same
    prompts and seed (each forward pass needs them all), and the first one keeps the figures."""
    torch.manual_seed(config.seed)
    trainer = PolicyTrainer(model, tokenizer, scorer, config, parallel)
    parallel = trainer.parallel
    if config.prompts_per_step % parallel.processes:
        raise ValueError(f"{config.prompts_per_step} prompts per step cannot be shared equally by {parallel.processes} "
                         f"processes: use a multiple of {parallel.processes}")
    report = on_step if parallel.is_main else lambda step, total, metrics: None
    on_phase = on_phase if parallel.is_main else lambda name: None
    evaluates = parallel.is_main or parallel.sharded
    history, checkpoints = [], []
    for step, prompts in enumerate(prompt_batches(train_prompts, config.prompts_per_step, config.steps, config.seed), start=1):
        seed = config.seed * 100_003 + step + 7_919 * parallel.rank  # each process its own sampling noise
        metrics = parallel.mean_of(trainer.step(parallel.my_share(prompts), seed=seed))
        history.append(metrics)
        report(step, config.steps, metrics)
        if eval_prompts and evaluates and is_checkpoint(step, config):  # the others wait at the next step's sums
            on_phase(f"checkpoint at step {step}: evaluating on {len(eval_prompts)} held-out prompts")
            checkpoints.append(spot_checks.checkpoint_of(step, trainer.evaluate(eval_prompts, seed=config.seed + 1)))
            on_phase(f"training: steps {step + 1}-{config.steps}")
    final = {"steps": config.steps, "reward/first_steps": _mean(history[:3], "reward/mean"),
             "reward/last_steps": _mean(history[-3:], "reward/mean"), "time/step_median": sorted(h["time/step"] for h in history)[len(history) // 2]}
    if eval_prompts and evaluates:
        on_phase(f"evaluating on {len(eval_prompts)} held-out prompts")
        final.update(trainer.evaluate(eval_prompts, seed=config.seed + 1))
        if checkpoints:
            final["checkpoints"] = checkpoints + [spot_checks.checkpoint_of(config.steps, final)]
    parallel.wait()
    return trainer, final


def is_checkpoint(step: int, config: PolicyConfig) -> bool:
    """A step after which people spot-check the policy as it is (`spot_check_every`); the last step is the version's.

    >>> [s for s in range(1, 11) if is_checkpoint(s, PolicyConfig(steps=10, spot_check_every=4))]
    [4, 8]
    """
    return bool(config.spot_check and config.spot_check_every) and step % config.spot_check_every == 0 and step < config.steps


def _mean(history: list[dict], key: str) -> float:
    return sum(h[key] for h in history) / max(1, len(history))


def run_job(db, config: PolicyConfig, job) -> dict:
    """Job body: load the generator and the reward model (or the judge), train, save and register the new generator
    version."""
    parallel = DataParallel(config.device, strategy=config.strategy)  # under `accelerate launch`: this process's part
    # what every process trains with is read once, by the first process, and sent to the others
    start, reward, limits, prompts, guidelines = parallel.share([
        versions.version_or_active(db, "generator", config.generator_version),
        None if config.judged else versions.version_or_active(db, "reward", config.reward_version),
        items.ranked_generation_limits(db),
        [conversation.as_messages(p["text"], p["messages"]) for p in items.prompts_of_set(db, config.prompt_set)],
        set_guidelines(db, config.prompt_set) if config.judged else None,
    ] if parallel.is_main else None)
    config = replace(config, generator_version=start["id"], reward_version=reward and reward["id"])  # the version records what it used
    train_prompts, eval_prompts = split_prompts(prompts, config.eval_prompts)
    if not config.judged:  # the reward model's view of cut answers; a judge reads them as they are
        asked = config
        config = shaped_to_the_rankings(config, limits, lambda line: None)  # the card says it, and the log once
        if config.max_new_tokens != asked.max_new_tokens:
            job.fact("max new tokens", f"{config.max_new_tokens}, raised from {asked.max_new_tokens}: the ranked "
                                       "completions were sampled with up to that many, and a shorter cap would cut "
                                       "answers where the reward model never saw them cut")
        if config.no_eos_penalty != asked.no_eos_penalty:
            job.fact("penalty for cut answers", f"off (was {asked.no_eos_penalty}): some ranked completions were cut at "
                                                "their cap, so the reward model already scores cut answers")
    device = parallel.device
    job.phase("loading the judge" if config.judged else "loading the reward model")
    scorer = load_scorer(db, config, reward, guidelines, str(device), job.log)
    job.log(f"{config.algorithm}: {start['name']} against {scorer_name(scorer, reward)} on {len(train_prompts)} prompts "
            f"({len(eval_prompts)} held out); LoRA {'on' if config.lora else 'off'}"
            + (f"; {parallel.processes} processes, {config.prompts_per_step // parallel.processes} prompts each a step"
               if parallel.processes > 1 else ""))
    start_config = model_config(start["path"])
    precision = precision_for(config.bf16, device, start_config)
    job.fact("precision", str(precision))
    job.phase("loading the generator")
    model, tokenizer = load_generator(start["path"], str(device), load_dtype(config, device, start_config))
    full_weights = hasattr(model, "merge_and_unload")  # starting from an adapter: merge it, save full weights
    if full_weights:
        model = model.merge_and_unload()

    def on_step(step, total, metrics):
        job.metrics(step, metrics)
        job.step_progress(step, total, f"reward {metrics['reward/mean']:.3f} · KL {metrics['policy/kl']:.3f}" + (
            f" · judge's votes readable {metrics['reward/judge_readable']:.0%}" if "reward/judge_readable" in metrics else ""))

    job.phase(f"training: {config.steps} steps of {config.prompts_per_step} prompts x {config.k} samples")
    trainer, metrics = fit(model, tokenizer, scorer, train_prompts, eval_prompts, config, on_step, job.phase, parallel)
    whole_state = parallel.full_state(trainer.policy)  # sharded: every process sends its shard, the first one saves
    parallel.wait()
    if not job.writes:  # one process of several: the first one saves
        return {}
    job.phase("saving")
    name = config.name or versions.default_version_name("policy")
    trained = trainer.trained_model()
    if full_weights and config.lora:
        trained = trained.merge_and_unload()

    pairs = spot_checks.favourites(metrics.get("examples", []), config.spot_check)
    queue, earlier = spot_checks.pairs_to_queue(metrics.get("checkpoints", []), config.steps, metrics, config.spot_check)
    if "checkpoints" in metrics:  # their examples are queued, not kept twice in the version's metrics
        metrics["checkpoints"] = spot_checks.without_examples(metrics["checkpoints"])
    rewarder = spot_checks.rewarder(config.judged)
    activate, activation = spot_checks.held_for_people(*gate.decide(config.activate, gate.generator_gate(metrics)), pairs, rewarder)
    version_id = save_generator_version(db, trained, tokenizer, name, start["id"], config, metrics, "policy_config.json", activate,
                                        state_dict=whole_state)
    for c in metrics.get("checkpoints", []):
        job.log(f"checkpoint at step {c['step']}: KL {c['val/kl']:.3f}, win rate {c['val/win_rate']:.2f}")
    job.log(activation)
    if queue:
        spot_checks.said_on_the_card(job, spot_checks.queue_for_people(
            db, version_id, start, queue, earlier, rewarder, config.spot_check, [config.prompt_set], queued_by=f"job {job.id}"))
    elif config.spot_check and (nothing := spot_checks.nothing_to_queue(metrics, rewarder)):
        spot_checks.said_on_the_card(job, nothing)
    if isinstance(scorer, JudgeReward):
        job.log(f"the judge's votes: {scorer.readable} of {scorer.asked} readable"
                + ("; none held a 'Ranking:' line, so every answer scored alike and the policy learnt nothing from the "
                   "judge (a larger model, or a remote one with a higher max_tokens, may follow the instructions)"
                   if scorer.asked and not scorer.readable else ""))
    job.log(f"saved {name}: reward {metrics.get('val/reward_before', float('nan')):.3f} -> {metrics.get('val/reward_after', float('nan')):.3f}, "
            f"win rate {metrics.get('val/win_rate', float('nan')):.2f} ({diagnostics.similar_length_text(metrics)}), "
            f"KL {metrics.get('val/kl', float('nan')):.3f}, capped {metrics.get('val/capped_before', float('nan')):.0%} -> "
            f"{metrics.get('val/capped_after', float('nan')):.0%}")
    for _, line in diagnostics.verdict(metrics):
        job.log(line)
    return {"version": version_id, "name": name, "activation": activation, "precision": str(precision),
            **diagnostics.held_out_figures(metrics)}


def load_scorer(db, config: PolicyConfig, reward: dict | None, guidelines: tuple[str, bool] | None, device: str, log):
    """The reward model's scorer, or the judge's (`config.judged`) with the prompt set's guidelines."""
    if not config.judged:
        from rm.score import RewardScorer

        return RewardScorer(reward["path"], device)
    text, found = guidelines
    if not found:
        log(f"the prompt set {config.prompt_set!r} has no guidelines: the judge is told a generic one")
    judge = Judge(db, JudgeConfig(remote=config.judge_remote, generator_version=config.judge_version,
                                  votes=config.judge_votes, max_new_tokens=config.judge_max_new_tokens,
                                  temperature=config.temperature, seed=config.seed, device=device), log)
    return JudgeReward(judge, config.judge_votes, text, config.k, config.seed)


def scorer_name(scorer, reward: dict | None) -> str:
    return f"the judge {scorer.judge.name} ({scorer.votes} votes)" if isinstance(scorer, JudgeReward) else reward["name"]


if __name__ == "__main__":
    raise SystemExit(job_main("train_policy", PolicyConfig, run_job))
