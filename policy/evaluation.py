"""A trained policy beside its reference on held-out prompts: samples from both, the KL between them, and with a reward
model (or an AI judge) the win rate, rewards and length diagnostics.

`PolicyEvaluator` also holds what sampling and scoring a rollout needs (the autocast, the micro-batches, the log-probs
with the reference's adapter switched off), so the policy update's trainer (policy/train.py) is one with an optimizer
added, and DPO (policy/dpo.py) builds one around the policy it trained.
"""

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from policy.config import PolicyConfig
from policy.generate import Prompt
from policy.rollout import Rollout, activation_bytes, completion_logprobs, sample_rollout
from training import diagnostics, release_freed_memory
from training.precision import autocast

EXAMPLES_SAVED = 8


def held_out_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) of each completion sampled from pi, summed over its tokens with Schulman's k3 estimator
    (r - 1 - log r, r = pi_ref / pi): unbiased like the plain log-ratio, never negative, and of lower variance, so a
    held-out figure is not a negative KL on a few samples.

    >>> held_out_kl(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, -2.0]]), torch.ones(1, 2)).tolist()
    [0.0]
    """
    log_ratio = ref_logprobs - logprobs  # [N, T] log(pi_ref / pi) at the sampled tokens
    return ((log_ratio.exp() - 1 - log_ratio) * mask).sum(1)  # [N]


class PolicyEvaluator:
    """The policy, its reference (None: the policy's LoRA adapter switched off) and an optional reward scorer.

    `rollout` samples K completions per prompt; `evaluate` and `kl_to_reference` compare the policy with its reference
    on held-out prompts. `micro_batch_prompts` and `max_prompt_tokens` default to the policy update's. `parallel`:
    a policy sharded across processes (training/parallel.py), whose every forward pass they run together: they sample
    in lockstep and split each rollout into as many micro-batches, and every process must call what this one does.
    """

    def __init__(self, policy, reference, tokenizer, scorer, *, k: int, max_new_tokens: int, temperature: float,
                 bf16: bool, max_prompt_tokens: int = PolicyConfig.max_prompt_tokens,
                 micro_batch_prompts: int = PolicyConfig.micro_batch_prompts, parallel=None):
        self.policy, self.reference, self.tokenizer, self.scorer = policy, reference, tokenizer, scorer
        self.sharded = parallel if parallel is not None and parallel.sharded else None
        self.device = policy.device
        self.k, self.max_new_tokens, self.temperature, self.bf16 = k, max_new_tokens, temperature, bf16
        self.max_prompt_tokens, self.micro_batch_prompts = max_prompt_tokens, micro_batch_prompts

    def autocast(self):
        return autocast(self.device, self.bf16)

    def reference_context(self):
        return self.policy.disable_adapter() if self.reference is None else nullcontext()

    def micro_batches(self, rollout: Rollout) -> list[tuple[int, int]]:
        """(start, stop) rows of each forward and backward pass: whole prompts' K samples, so leave-one-out holds."""
        rows, n = self.prompts_per_pass(rollout) * self.k, rollout.sequences.shape[0]
        return [(start, min(start + rows, n)) for start in range(0, n, rows)]

    def prompts_per_pass(self, rollout: Rollout) -> int:
        """`micro_batch_prompts`, or automatically (0): one prompt on a CPU; on a GPU (bound by kernel launches, not
        memory, for a small model) all of the rollout's prompts when their activations fit in half the free memory
        (sharded: on every process)."""
        if self.micro_batch_prompts:
            return self.micro_batch_prompts
        prompts = rollout.sequences.shape[0] // self.k
        if self.device.type != "cuda":
            return 1
        free, _ = torch.cuda.mem_get_info(self.device)
        fits = activation_bytes(self.policy.config, rollout) <= free / 2
        return prompts if (self.sharded.everyone(fits) if self.sharded else fits) else 1

    def micro_logprobs(self, model, rollout: Rollout, start: int, stop: int, value_head=None, with_entropy=True):
        """`completion_logprobs` of rows start..stop-1, padded back to the rollout's T columns (zeros after the
        micro-batch's longest completion, which the completion mask leaves out anyway)."""
        T = rollout.completion_mask.shape[1]
        with self.autocast():
            out = completion_logprobs(model, rollout.rows(start, stop), self.temperature, value_head, with_entropy)
        return tuple(None if x is None else F.pad(x, (0, T - x.shape[1])) for x in out)

    @torch.no_grad()
    def logprobs_without_grad(self, model, rollout: Rollout) -> torch.Tensor:
        """Completion log-probs [N, T], a micro-batch at a time."""
        return torch.cat([self.micro_logprobs(model, rollout, a, b, with_entropy=False)[0] for a, b in self.micro_batches(rollout)])

    @torch.no_grad()
    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        with self.reference_context():
            return self.logprobs_without_grad(self.reference or self.policy, rollout)

    def sampling_model(self):
        """The policy as the model to sample from (the policy update's trainer keeps a merged copy for this)."""
        return self.policy

    def rollout(self, prompts: list[Prompt], seed: int, policy=None) -> Rollout:
        torch.manual_seed(seed)
        model = policy or self.sampling_model()
        with self.autocast(), (self.sharded.gathered(model) if self.sharded else nullcontext()):
            rollout = sample_rollout(model, self.tokenizer, prompts, self.k, self.max_new_tokens, self.temperature,
                                     self.max_prompt_tokens, self.sharded.everyone if self.sharded else None)
        release_freed_memory()  # the KV cache
        return rollout

    @torch.no_grad()
    def kl_to_reference(self, prompts: list[Prompt], seed: int) -> float:
        """KL(pi || pi_ref) per completion, estimated on the policy's own samples."""
        new = self.rollout(prompts, seed)
        return held_out_kl(self.logprobs_without_grad(self.policy, new), self.reference_logprobs(new), new.completion_mask).mean().item()

    def scores_before_after(self, new: Rollout, old: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """The scorer's rewards of the new and the old samples, [N] each. A judge's rewards are relative to the answers
        ranked together, so it ranks each prompt's K new and K old answers in one group."""
        if not getattr(self.scorer, "relative", False):
            return self.scorer.score(new.prompts, new.texts).float().cpu(), self.scorer.score(old.prompts, old.texts).float().cpu()
        k, rows = self.k, range(0, len(new.texts), self.k)
        prompts = [p for a in rows for p in new.prompts[a:a + k] + old.prompts[a:a + k]]
        texts = [t for a in rows for t in new.texts[a:a + k] + old.texts[a:a + k]]
        both = self.scorer.score(prompts, texts, group=2 * k).float().cpu().view(-1, 2, k)  # [B, new/old, K]
        return both[:, 0].flatten(), both[:, 1].flatten()

    @torch.no_grad()
    def evaluate(self, prompts: list[Prompt], seed: int) -> dict:
        """The current and the starting policy on the same held-out prompts and seed: rewards, KL, win rate, and
        whether the gain is length (lengths, capped shares, reward-length correlation, length-controlled win rate)."""
        k = self.k
        new = self.rollout(prompts, seed)
        with self.reference_context():
            old = self.rollout(prompts, seed, policy=self.reference or self.policy)
        new_scores, old_scores = self.scores_before_after(new, old)  # [N], [N]
        new_logprobs = self.logprobs_without_grad(self.policy, new)
        kl = held_out_kl(new_logprobs, self.reference_logprobs(new), new.completion_mask)  # [N]
        new_lengths, old_lengths = new.completion_mask.sum(1).float().cpu(), old.completion_mask.sum(1).float().cpu()  # [N]
        diff = new_scores - old_scores  # paired: same prompt, same sample index
        # every new sample against every old one of the same prompt: [B, K, K] reward and length differences
        reward_gain = (new_scores.view(-1, k, 1) - old_scores.view(-1, 1, k)).flatten().tolist()
        length_gain = (new_lengths.view(-1, k, 1) - old_lengths.view(-1, 1, k)).flatten().tolist()
        biggest = diff.argsort(descending=True)[:EXAMPLES_SAVED].tolist()
        # with each answer's length and whether it ended, so that a spot check shows a cut answer as cut
        examples = [{"prompt": new.prompts[i], "before": old.texts[i], "before_reward": round(old_scores[i].item(), 3),
                     "after": new.texts[i], "after_reward": round(new_scores[i].item(), 3),
                     "before_tokens": int(old_lengths[i]), "before_ended": bool(old.ended[i]),
                     "after_tokens": int(new_lengths[i]), "after_ended": bool(new.ended[i])} for i in biggest]
        return {"val/reward_before": old_scores.mean().item(), "val/reward_after": new_scores.mean().item(),
                "val/kl": kl.mean().item(), "val/win_rate": ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item(),
                "val/win_pairs": len(diff),
                **dict(zip(("val/lc_win_rate", "val/lc_pairs"), diagnostics.length_controlled_win_rate(
                    reward_gain, length_gain, tolerance=max(2.0, 0.1 * torch.cat([new_lengths, old_lengths]).mean().item())))),
                "val/reward_length_corr": diagnostics.correlation(new_scores.tolist(), new_lengths.tolist()),
                "val/length_before": old_lengths.mean().item(), "val/length_after": new_lengths.mean().item(),
                "val/capped_before": (~old.ended).float().mean().item(), "val/capped_after": (~new.ended).float().mean().item(),
                "examples": examples}
