"""Direct preference optimisation of the generator straight from the rankings: no reward model in between.

    python -m policy.dpo --epochs 1 --beta 0.1

A ranking's K completions go through the model together, their shared prompt once (as in the policy update), and
every pair the ranking implies (D > C > A = B gives D>C, D>A, D>B, C>A, C>B; a tie none) is then read off the K
sequence log-probs, so the pairs of one ranking always share a batch and cost no extra pass:
    h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))      the pair's log-ratio margin
    sigmoid (DPO):  -log sigma(beta * h)          ipo (IPO):  (h - 1 / (2 beta))^2
averaged over the ranking's pairs (weighted by rank gap with --margin-weight), then over the step's rankings
(weighted by their annotators' reliability with --weighting reliability, data/reliability.py).
The reference is the starting generator: with LoRA, the same model with the adapter switched off.

The parts, in the order every trainer lists them (rm/train.py, policy/sft.py, here, policy/train.py):
  config      policy/config.py:DPOConfig
  data        rankings split by prompt (training/rankings.py); encode_ranking: one prompt and its K completions
  loss        preference_loss over the pairs a ranking implies (data/rankings.py:ranking_to_pairs)
  loop        fit(model, tokenizer, train, validation, config, on_step) -> (trainer, metrics);
              PreferenceTrainer.step is one update
  evaluation  PreferenceTrainer.evaluate: held-out pair accuracy and margins; held_out_evaluation: samples of the
              trained and the starting generator (policy/evaluation.py:PolicyEvaluator); KLBudget: the KL to the
              reference checked during training, stopping at the budget with the last checkpoint within it
  job entry   run_job(db, config, job), run by `python -m policy.dpo`
"""

import copy
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from data import conversation, spot_checks, versions
from data.jobs import job_main
from data.rankings import Pair, ranking_to_pairs, tied_pairs
from policy.config import DPOConfig
from policy.evaluation import PolicyEvaluator
from policy.models import load_generator, save_generator_version, with_lora_adapter
from policy.rollout import Rollout, completion_logprobs
from policy.sft import encode_demonstration
from training import checkpointing, diagnostics, gate, model_config, quantization, release_freed_memory, warmup_then_decay
from training.parallel import DataParallel
from training.precision import autocast, load_dtype, precision_for, use_bf16
from training.rankings import RankingExample, load_rankings, split_by_prompt, weighted_by_reliability, weights_line

EVAL_PROMPTS = DPOConfig.EVAL_PROMPTS


@dataclass
class EncodedRanking:
    sequences: Rollout  # the prompt once for its K completions (right-padded); k = K
    pairs: list[Pair]  # (chosen, rejected, rank gap), positions into the K completions
    n_tokens: int  # real tokens: the prompt once plus every completion
    weight: float = 1.0  # the ranking's weight in a step's loss (its annotator's reliability with --weighting)
    ties: list[tuple[int, int]] = field(default_factory=list)  # the pairs it ties, positions into the K completions


def encode_ranking(tokenizer, example: RankingExample, max_length: int) -> EncodedRanking | None:
    """The ranking as one prompt and its K completions, each ending with the end-of-turn token (None when the
    prompt alone reaches max_length: nothing of the completions would be left to compare)."""
    prompt = example.messages or conversation.as_messages(example.prompt)
    rows = [encode_demonstration(tokenizer, prompt, completion, max_length) for completion in example.completions]
    P = rows[0][1]
    if P >= max_length:
        return None
    T = max(len(ids) - P for ids, _ in rows)
    K = len(rows)
    sequences = torch.full((K, P + T), tokenizer.pad_token_id, dtype=torch.long)  # [K, P+T]
    attention = torch.zeros(K, P + T, dtype=torch.long)  # [K, P+T]
    completion_mask = torch.zeros(K, T, dtype=torch.bool)  # [K, T]
    for r, (ids, _) in enumerate(rows):
        sequences[r, :len(ids)] = torch.tensor(ids)
        attention[r, :len(ids)] = 1
        completion_mask[r, :len(ids) - P] = True
    rollout = Rollout(sequences, attention, completion_mask, P, K, torch.ones(K, dtype=torch.bool), [example.prompt] * K,
                      example.completions)
    return EncodedRanking(rollout, ranking_to_pairs(example.groups), P + int(completion_mask.sum()), example.weight,
                          tied_pairs(example.groups))


def sequence_logprobs(model, ranking: EncodedRanking) -> torch.Tensor:
    """log pi(y | x) of each of the ranking's K completions (the sum over its tokens). [K]"""
    sequences = ranking.sequences.to(model.device)  # a no-op once fit has moved it
    logprobs, _, _ = completion_logprobs(model, sequences, 1.0, with_entropy=False)  # [K, T]
    return (logprobs * sequences.completion_mask).sum(1)


def preference_loss(policy_logps: torch.Tensor, reference_logps: torch.Tensor, pairs: list[Pair], beta: float,
                    loss: str = "sigmoid", margin_weight: bool = False,
                    ties: list[tuple[int, int]] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """The ranking's loss (mean over its pairs) and each strict pair's log-ratio margin h. logps [K] -> (scalar, [P])
    Tied pairs (`ties`, with --ties equal) count as a preference of probability 1/2, whose loss is least at h = 0:
    sigmoid: -(log sigma(beta h) + log sigma(-beta h)) / 2 (DPO with a soft label of 1/2); ipo: h^2 (IPO's target
    for a probability of 1/2). Each tied pair weighs 1 (with --margin-weight, as a rank gap of 1).

    >>> loss, h = preference_loss(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0]), [Pair(0, 1, 1)], beta=0.5)
    >>> h.tolist(), round(loss.item(), 4)  # h = (-1 + 2) - (-3 + 2) = 2; -log sigma(0.5 * 2)
    ([2.0], 0.3133)
    >>> tie, _ = preference_loss(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0]), [], beta=0.5, ties=[(0, 1)])
    >>> round(tie.item(), 4)  # -(log sigma(1) + log sigma(-1)) / 2
    0.8133
    """
    device = policy_logps.device
    chosen = torch.tensor([p.chosen for p in pairs], device=device, dtype=torch.long)  # [P]
    rejected = torch.tensor([p.rejected for p in pairs], device=device, dtype=torch.long)  # [P]
    log_ratio = policy_logps - reference_logps  # [K] log pi/ref of each completion
    h = log_ratio[chosen] - log_ratio[rejected]  # [P]
    losses = -F.logsigmoid(beta * h) if loss == "sigmoid" else (h - 1 / (2 * beta)) ** 2  # [P]
    weights = torch.tensor([float(p.margin) if margin_weight else 1.0 for p in pairs], device=device)  # [P]
    if ties:
        a, b = (torch.tensor(side, device=device, dtype=torch.long) for side in zip(*ties))  # [Q], [Q]
        h_tie = log_ratio[a] - log_ratio[b]  # [Q]
        tied = -(F.logsigmoid(beta * h_tie) + F.logsigmoid(-beta * h_tie)) / 2 if loss == "sigmoid" else h_tie ** 2  # [Q]
        losses, weights = torch.cat([losses, tied]), torch.cat([weights, torch.ones_like(tied)])
    return (weights * losses).sum() / weights.sum(), h


class PreferenceTrainer:
    """The policy, its reference and the optimizer; `step(rankings)` is one update. Under `accelerate launch`
    (`parallel`), each process steps on its share of a step's rankings and evaluates its share of the held-out ones;
    the weights, gradients and figures are the whole batch's (training/parallel.py). Sharded (full weights), the
    policy and its reference are split across the processes, which run every forward and backward pass together: a
    process with fewer rankings than another runs `company`'s passes at weight 0 to make up the count."""

    def __init__(self, model, tokenizer, config: DPOConfig, total_steps: int, parallel: DataParallel | None = None):
        self.config, self.tokenizer, self.device = config, tokenizer, model.device
        self.parallel = parallel or DataParallel(str(model.device), alone=True)
        self.bf16 = use_bf16(config.bf16, self.device, model.config)
        if config.lora:
            self.policy = with_lora_adapter(model, config.lora_rank, bf16_base=self.bf16)
            self.reference = None  # the adapter switched off
        else:
            self.policy = model
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.policy.eval()  # no dropout: the reference and the policy see the same function at step 0
        if config.gradient_checkpointing:
            checkpointing.enable(self.policy)
        self.parallel.prepare(self.policy)  # the first process's weights (and LoRA's random start) everywhere
        if self.parallel.sharded:
            self.parallel.prepare(self.reference, frozen=True)
        self.company: EncodedRanking | None = None  # sharded: what a process with no ranking of a step runs (fit sets it)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0, fused=True)
        self.schedule = warmup_then_decay(self.optimizer, total_steps, total_steps // 10)

    def autocast(self):
        return autocast(self.device, self.bf16)

    def evaluator(self, scorer=None) -> PolicyEvaluator:
        """The policy beside its reference for sampled held-out figures (the KL budget's checks, the final evaluation)."""
        return PolicyEvaluator(self.policy, self.reference, self.tokenizer, scorer, k=self.config.eval_samples,
                               max_new_tokens=self.config.max_new_tokens, temperature=1.0, bf16=self.bf16,
                               parallel=self.parallel)

    @torch.no_grad()
    def reference_logprobs(self, ranking: EncodedRanking) -> torch.Tensor:
        with self.autocast(), (self.policy.disable_adapter() if self.reference is None else nullcontext()):
            return sequence_logprobs(self.reference or self.policy, ranking)

    def step(self, rankings: list[EncodedRanking], on_pass=lambda done, of: None) -> dict:
        """One optimizer step over a batch of whole rankings (this process's share of it, under several), one
        ranking's forward and backward pass at a time; the step's loss is the batch's rankings' losses averaged by
        their weights. `on_pass(done, of)` hears each pass end (a step of long answers takes minutes on a CPU)."""
        c, losses, margins = self.config, [], []
        total_weight = self.parallel.total(torch.tensor([sum(r.weight for r in rankings)], device=self.device)).item()
        # each ranking's share of the batch's loss; times the processes, as their gradients are averaged, not summed
        scale = self.parallel.processes / max(total_weight, 1e-8)
        for ranking in self.parallel.padded(rankings):
            counted = ranking is not None
            ranking = ranking if counted else (rankings[0] if rankings else self.company)  # sharded: a pass for company
            reference = self.reference_logprobs(ranking)  # [K]
            with self.autocast(), checkpointing.gradient_pass(self.policy, c.gradient_checkpointing):
                policy = sequence_logprobs(self.policy, ranking)  # [K] with grad
            ties = ranking.ties if c.ties == "equal" else ()
            loss, h = preference_loss(policy, reference, ranking.pairs, c.beta, c.loss, c.margin_weight, ties)
            (loss * ranking.weight * scale * counted).backward()
            if counted:
                losses.append(loss.item())
                margins.append(h.detach())
                on_pass(len(losses), len(rankings))
        self.parallel.average_gradients()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.parallel.clip_gradients(params, 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        release_freed_memory()
        figures = self.batch_figures(losses, torch.cat(margins).cpu() if margins else torch.zeros(0))
        return {"train/loss": figures["loss"], "train/accuracy": figures["accuracy"],
                "train/reward_margin": c.beta * figures["margin"], "train/lr": self.schedule.get_last_lr()[0]}

    def batch_figures(self, losses: list[float], h: torch.Tensor, logp_margins: list[float] = ()) -> dict:
        """The mean loss per ranking, pair accuracy (a tie half), mean margin h and log-prob margin per pair, over
        every process's rankings (one all-reduce; alone, these rankings')."""
        sums = self.parallel.total(torch.tensor([sum(losses), len(losses), ((h > 0).float() + 0.5 * (h == 0).float()).sum().item(),
                                                 h.sum().item(), len(h), sum(logp_margins)], dtype=torch.float64, device=self.device))
        loss, rankings, correct, h_sum, pairs, logp = sums.tolist()
        return {"loss": loss / max(rankings, 1), "accuracy": correct / pairs if pairs else float("nan"),
                "margin": h_sum / pairs if pairs else 0.0, "logp_margin": logp / max(pairs, 1), "pairs": int(pairs)}

    @torch.no_grad()
    def evaluate(self, rankings: list[EncodedRanking]) -> dict:
        """Held-out rankings: the loss, the implicit reward's pair accuracy (h > 0; a tie 0.5), the implicit reward
        margin beta * h, and the policy's own log-prob margin of the chosen over the rejected completion."""
        c, losses, margins, logp_margins = self.config, [], [], []
        for ranking in self.parallel.padded(self.parallel.my_share(rankings)):
            if ranking is None:  # sharded: the passes of a ranking the others run, for company, not counted
                self.reference_logprobs(rankings[0])
                with self.autocast():
                    sequence_logprobs(self.policy, rankings[0])
                continue
            reference = self.reference_logprobs(ranking)
            with self.autocast():
                policy = sequence_logprobs(self.policy, ranking)
            loss, h = preference_loss(policy, reference, ranking.pairs, c.beta, c.loss, c.margin_weight)
            losses.append(loss.item())
            margins.append(h)
            logp_margins += [(policy[p.chosen] - policy[p.rejected]).item() for p in ranking.pairs]
        figures = self.batch_figures(losses, torch.cat(margins).cpu() if margins else torch.zeros(0), logp_margins)
        return {"val/loss": figures["loss"], "val/accuracy": figures["accuracy"], "val/reward_margin": c.beta * figures["margin"],
                "val/logp_margin": figures["logp_margin"], "val/pairs": figures["pairs"]}


def fit(model, tokenizer, train: list[RankingExample], validation: list[RankingExample], config: DPOConfig,
        on_step=lambda step, total, metrics: None, parallel: DataParallel | None = None,
        spot_checked: bool = False, scorer=None, on_phase=lambda name: None,
        on_progress=lambda done, total, text: None) -> tuple[PreferenceTrainer, dict]:
    """Train on rankings in memory; returns (trainer, metrics). Under `accelerate launch` (`parallel`), every process
    walks the same batches and steps on its share of each; only the first one reports and checks the KL budget.
    `spot_checked`: each KL check evaluates the policy with `scorer` (a reward model's), for people's spot check.
    `on_phase` hears what the run does next; `on_progress` (steps done, a fraction within one) what a step or a KL
    check is at, between the steps' reports."""
    torch.manual_seed(config.seed)
    device = model.device
    teaches = lambda r: r.pairs or (config.ties == "equal" and r.ties)  # noqa: E731
    encode = lambda examples: [replace(r, sequences=r.sequences.to(device))  # noqa: E731
                               for r in (encode_ranking(tokenizer, e, config.max_length) for e in examples)
                               if r is not None and teaches(r)]
    train_rankings, val_rankings = encode(train), [r for r in encode(validation) if r.pairs]
    if not train_rankings:
        raise ValueError("no training ranking has a strict preference (ties only, or prompts longer than max_length)")
    steps_per_epoch = math.ceil(len(train_rankings) / config.rankings_per_step)
    total = steps_per_epoch * config.epochs
    trainer = PreferenceTrainer(model, tokenizer, config, total, parallel)
    trainer.company = train_rankings[0]
    parallel = trainer.parallel
    if not parallel.is_main:
        on_step, on_phase, on_progress = lambda step, total, metrics: None, lambda name: None, lambda done, total, text: None
    budget = KLBudget(trainer, held_out_prompts(validation), config, total, spot_checked, scorer)
    on_phase(f"held-out pair accuracy before training ({len(val_rankings)} rankings)")
    before = trainer.evaluate(val_rankings)
    on_phase(f"training on {len(train_rankings)} rankings")
    step, tokens, seconds = 0, 0, 0.0
    for epoch in range(1, config.epochs + 1):
        order = list(range(len(train_rankings)))
        random.Random(config.seed + epoch).shuffle(order)
        for start in range(0, len(order), config.rankings_per_step):
            batch = [train_rankings[i] for i in order[start:start + config.rankings_per_step]]
            started = time.perf_counter()
            passes = lambda done, of: on_progress(step + done / of, total, f"step {step + 1}/{total}: ranking {done} of {of}")  # noqa: E731
            metrics = trainer.step(parallel.my_share(batch), passes)
            seconds += time.perf_counter() - started
            step, tokens = step + 1, tokens + sum(r.n_tokens for r in batch)
            on_step(step, total, {"train/epoch": epoch, **metrics, "speed/tokens_per_s": tokens / seconds})
            if budget.due(step):
                on_progress(step, total, f"step {step}/{total} · KL check: sampling {config.eval_samples} answers to each "
                                         f"of {len(budget.prompts)} held-out prompts")
                kl = budget.check(step)
                on_step(step, total, {"val/kl": kl})
                if budget.spent:
                    break
        if budget.spent:
            break
        on_step(step, total, {"train/epoch": epoch, **trainer.evaluate(val_rankings)})
    after = trainer.evaluate(val_rankings)
    return trainer, {**after, "val/accuracy_before": before["val/accuracy"], "val/loss_before": before["val/loss"],
                     "steps": step, "train/tokens_per_s": tokens / max(seconds, 1e-9), "train/rankings": len(train_rankings),
                     "train/pairs": sum(len(r.pairs) for r in train_rankings), "val/rankings": len(val_rankings),
                     **budget.summary()}


class KLBudget:
    """Spends at most `config.kl_budget` nats of KL to the reference: `kl_checks` times over the run the policy samples
    the held-out prompts (as the final evaluation does, same seed), and the trainable weights are kept as a checkpoint
    while the KL is within the budget; past it, the last checkpoint within budget (the start if none) is restored
    and training stops. Off with kl_budget 0 (unless people spot-check each check), kl_checks 0, eval_samples 0 or
    no held-out prompt."""

    def __init__(self, trainer: "PreferenceTrainer", prompts: list, config: DPOConfig, total_steps: int,
                 spot_checked: bool = False, scorer=None):
        """`spot_checked` (the same in every process): each check also evaluates with `scorer` (the first process's)."""
        self.trainer, self.prompts, self.config, self.scorer = trainer, prompts, config, scorer
        on = (config.kl_budget > 0 or spot_checked) and config.kl_checks > 0 and config.eval_samples > 0 and prompts
        self.at = {round(total_steps * (i + 1) / config.kl_checks) for i in range(config.kl_checks)} if on else set()
        self.checkpoint, self.checkpoint_step = self.trainable_state(), 0
        self.curve: list[tuple[int, float]] = []  # (step, KL) of every check
        self.checkpoints: list[dict] = []  # with a scorer: each check's evaluation, for people's spot check
        self.spent = False

    def due(self, step: int) -> bool:
        return step in self.at

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trainable weights on the CPU (sharded: this process's shards)."""
        policy = self.trainer.parallel.resharded(self.trainer.policy)
        return {name: local(p).detach().to("cpu", copy=True) for name, p in policy.named_parameters() if p.requires_grad}

    def check(self, step: int) -> float:
        """The KL now; under several processes the first one samples it (sharded: all of them, together, and the first
        one's figure is kept) and every process takes the same decision."""
        parallel = self.trainer.parallel
        kl = self.kl_now(step) if parallel.is_main or parallel.sharded else 0.0
        kl = parallel.total(torch.tensor([kl if parallel.is_main else 0.0], dtype=torch.float64, device=self.trainer.device)).item()
        self.curve.append((step, kl))
        if not self.config.kl_budget or kl <= self.config.kl_budget:
            self.checkpoint, self.checkpoint_step = self.trainable_state(), step
        else:
            self.restore()
        return kl

    def kl_now(self, step: int) -> float:
        """The KL sampled on the held-out prompts; with a scorer, the whole evaluation, kept as a checkpoint."""
        if self.scorer is None:
            return self.trainer.evaluator().kl_to_reference(self.prompts, self.config.seed)
        evaluation = self.trainer.evaluator(self.scorer).evaluate(self.prompts, self.config.seed)
        self.checkpoints.append(spot_checks.checkpoint_of(step, evaluation))
        return evaluation["val/kl"]

    @torch.no_grad()
    def restore(self):
        parameters = dict(self.trainer.parallel.resharded(self.trainer.policy).named_parameters())
        for name, value in self.checkpoint.items():
            local(parameters[name]).copy_(value)
        self.spent = True

    def summary(self) -> dict:
        if not self.curve:
            return {}
        return {"kl_budget/curve": self.curve, "kl_budget/spent": self.spent, "kl_budget/kept_step": self.checkpoint_step
                if self.spent else self.curve[-1][0], **({"checkpoints": self.checkpoints} if self.checkpoints else {})}


def local(parameter: torch.Tensor) -> torch.Tensor:
    """A parameter's values held by this process: a sharded one's shard (DTensor), else the parameter itself."""
    from torch.distributed.tensor import DTensor

    return parameter.to_local() if isinstance(parameter, DTensor) else parameter


def held_out_evaluation(trainer: PreferenceTrainer, validation: list[RankingExample], config: DPOConfig,
                        scorer=None) -> dict:
    """Samples of the trained and the starting generator on held-out prompts: the KL to the reference, and with a
    reward model its win rate, rewards and length diagnostics (the policy update's evaluation)."""
    prompts = held_out_prompts(validation)
    evaluator = trainer.evaluator(scorer)
    if scorer is None:
        return {"val/kl": evaluator.kl_to_reference(prompts, config.seed)}
    return evaluator.evaluate(prompts, config.seed)


def held_out_prompts(validation: list[RankingExample]) -> list:
    """The first EVAL_PROMPTS distinct prompts of the held-out rankings, as chat messages."""
    prompts, seen = [], set()
    for e in validation:
        if e.prompt_id not in seen and len(prompts) < EVAL_PROMPTS:
            seen.add(e.prompt_id)
            prompts.append(e.messages or conversation.as_messages(e.prompt))
    return prompts


def run_job(db, config: DPOConfig, job) -> dict:
    """Job body: rankings from the store, DPO, then save and register the new generator version."""
    parallel = DataParallel(config.device, strategy=config.strategy)  # under `accelerate launch`: this process's part
    start, reward = parallel.share([versions.version_or_active(db, "generator", config.generator_version),
                                    versions.active_version(db, "reward")] if parallel.is_main else None)
    examples = None
    if parallel.is_main:  # read once, by the first process, and sent to the others: all train on the same rankings
        loaded = load_rankings(db, config.prompt_sets or None, config.annotators or None)
        examples = [e for e in loaded if ranking_to_pairs(e.groups) or (config.ties == "equal" and tied_pairs(e.groups))]
        if len(examples) < len(loaded):  # the screen counted them: say where they went
            job.log(f"{len(loaded) - len(examples)} of the {len(loaded)} rankings left out: every answer tied, and ties "
                    "give no pair unless 'Learn from ties' is on")
        if config.weighting == "reliability":
            examples = weighted_by_reliability(db, examples)
            job.log(weights_line(examples))
    examples = parallel.share(examples, as_type=RankingExample)
    train, validation = split_by_prompt(examples, config.validation_fraction, config.seed) if examples else ([], [])
    if not train or not validation:
        raise ValueError(f"need rankings with a strict preference for at least 2 prompts (one held out), have "
                         f"{len(examples)}: rank some items of the prompt sets picked on the Annotate page, or import rankings")
    job.log(f"DPO ({config.loss}, beta {config.beta}) of {start['name']} on {len(train)} rankings "
            f"({len(validation)} held out); LoRA {'on' if config.lora else 'off'}"
            + (f"; {parallel.processes} processes" if parallel.processes > 1 else ""))
    device = parallel.device
    start_config = model_config(start["path"])
    precision = precision_for(config.bf16, device, start_config)
    job.fact("precision", str(precision))
    job.phase("loading the generator")
    model, tokenizer = load_generator(start["path"], str(device), load_dtype(config, device, start_config), config.quantize)
    if config.quantize != "none":
        job.fact("base weights", quantization.job_fact(config.quantize))
    full_weights = hasattr(model, "merge_and_unload")  # starting from an adapter: merge it, save full weights
    if full_weights:
        model = model.merge_and_unload()

    def on_step(step, total, metrics):
        job.metrics(step, metrics)
        if "train/loss" in metrics:
            job.step_progress(step, total, f"loss {metrics['train/loss']:.3f} · pair accuracy {metrics['train/accuracy']:.2f}")
        elif set(metrics) == {"val/kl"}:
            job.log(f"step {step}/{total}: KL to the start {metrics['val/kl']:.2f}"
                    + (f" of the budget {config.kl_budget:g}" if config.kl_budget else ""))

    scorer = None
    if config.eval_samples and reward is not None and (parallel.is_main or parallel.sharded):  # sharded: all evaluate
        from rm.score import RewardScorer

        scorer = RewardScorer(reward["path"], str(device))
        job.log(f"evaluating against the active reward model {reward['name']}")
    spot_checked = bool(config.spot_check_checkpoints and config.spot_check and config.eval_samples and reward)
    if config.spot_check_checkpoints and not spot_checked:
        job.fact("spot check at each KL check", "not done: it needs an active reward model (Train → Models), "
                                                "samples per held-out prompt and pairs to spot-check above 0")
    trainer, metrics = fit(model, tokenizer, train, validation, config, on_step, parallel, spot_checked, scorer,
                           on_phase=job.phase, on_progress=job.progress)
    if config.eval_samples and parallel.sharded:  # every process samples together; the first one keeps the figures
        job.phase("evaluating: samples on held-out prompts")
        metrics.update(held_out_evaluation(trainer, validation, config, scorer))
    whole_state = parallel.full_state(trainer.policy)  # sharded: every process sends its shard, the first one saves
    parallel.wait()
    if not job.writes:  # one process of several: the first one evaluates on samples and saves
        return {}
    if metrics.get("kl_budget/spent"):
        job.log(f"KL budget {config.kl_budget:g} spent: stopped at step {metrics['steps']}, kept the weights of step "
                f"{metrics['kl_budget/kept_step']} (the last check within it)")
    job.log(f"held-out pair accuracy {metrics['val/accuracy_before']:.0%} -> {metrics['val/accuracy']:.0%} "
            f"on {metrics['val/pairs']} pairs")
    if config.eval_samples and not parallel.sharded:
        job.phase("evaluating: samples on held-out prompts")
        metrics.update(held_out_evaluation(trainer, validation, config, scorer))
    job.phase("saving")
    trained = trainer.policy.merge_and_unload() if full_weights and config.lora else trainer.policy
    name = config.name or versions.default_version_name("dpo")
    pairs = spot_checks.favourites(metrics.get("examples", []), config.spot_check)
    final_step = metrics["kl_budget/kept_step"] if metrics.get("kl_budget/spent") else metrics["steps"]
    queue, earlier = spot_checks.pairs_to_queue(metrics.get("checkpoints", []), final_step, metrics, config.spot_check)
    if "checkpoints" in metrics:  # queued, not kept twice; the final weights' evaluation is the last checkpoint
        metrics["checkpoints"] = spot_checks.without_examples(
            [c for c in metrics["checkpoints"] if c["step"] != final_step] + [spot_checks.checkpoint_of(final_step, metrics)])
    activate, activation = spot_checks.held_for_people(*gate.decide(config.activate, gate.generator_gate(metrics, gate.DPO_REMEDY)), pairs)
    version_id = save_generator_version(db, trained, tokenizer, name, start["id"], config, metrics, "dpo_config.json", activate,
                                        state_dict=whole_state)
    for c in metrics.get("checkpoints", []):
        job.log(f"checkpoint at step {c['step']}: KL {c['val/kl']:.3f}, win rate {c['val/win_rate']:.2f}")
    job.log(f"saved {name}; {activation}")
    if queue:
        spot_checks.said_on_the_card(job, spot_checks.queue_for_people(
            db, version_id, start, queue, earlier, spot_checks.rewarder(False), config.spot_check, config.prompt_sets,
            queued_by=f"job {job.id}"))
    elif config.spot_check and (nothing := spot_checks.nothing_to_queue(metrics, spot_checks.rewarder(False))):
        spot_checks.said_on_the_card(job, nothing)
    return {"version": version_id, "name": name, "activation": activation, "precision": str(precision),
            **diagnostics.held_out_figures(metrics),
            **{k: v for k, v in metrics.items() if k.startswith("kl_budget/")}}


if __name__ == "__main__":
    raise SystemExit(job_main("dpo", DPOConfig, run_job))
