"""Train a reward model on the store's rankings. Admin page job, or:

    python -m rm.train --epochs 2 --backbone embedded:all-MiniLM-L6-v2

Several GPUs: `accelerate launch --config_file training/accelerate/data_parallel.yaml --num_processes N -m rm.train ...`
runs the same code path; each process trains on its share of the batches, gradients are averaged, and the first
process records the job and writes the version (training/parallel.py).

The parts, in the order every trainer lists them (here, policy/sft.py, policy/dpo.py, policy/train.py):
  config      rm/config.py:RewardConfig
  data        rankings split by prompt (training/rankings.py), check_enough; rm/data.py:make_batches
  loss        ranking_loss: rm/loss.py:kwise_loss, the K-wise Bradley-Terry loss, or davidson_loss (--ties davidson)
  loop        fit(train, validation, config, on_step) -> (model, tokenizer, metrics); train_reward_model splits the
              rankings, fits, and draws the learning curve
  evaluation  evaluate: held-out loss, pair accuracy with its interval, reward distribution, calibration; tie figures
  job entry   run_job(db, config, job), run by `python -m rm.train`
"""

import random
import time
from dataclasses import asdict

import torch

from data import uncertainty, versions
from data.rankings import tied_pairs
from data.jobs import job_main
from training import checkpointing, diagnostics, gate, model_config, release_freed_memory, warmup_then_decay
from training.precision import autocast, precision_for, use_bf16
from training.parallel import DataParallel
from training.rankings import RankingExample, load_rankings, n_pairs, split_by_prompt, weighted_by_reliability, weights_line
from rm.config import RewardConfig
from rm.data import make_batches
from rm.loss import davidson_loss, initial_log_nu, kwise_loss, pairwise_accuracy, tie_probability
from rm.model import new_reward_model, save_reward_model

CALIBRATION_BUCKETS = 5
LEARNING_CURVE_SHARES = (0.25, 0.5)  # of the training prompts, for the learning curve
TIE_LEARNING_RATE = 0.1  # Davidson's log nu: one scalar, moved by AdamW at this rate (the network's is ~5e-5)


class NotEnoughData(ValueError):
    """Too few comparisons to train and validate; the message says how many more are needed."""


def check_enough(train, validation) -> None:
    if n_pairs(train) == 0 or n_pairs(validation) == 0:
        prompts = len({e.prompt_id for e in train + validation})
        advice = ("rank items of at least 2 prompts on the Annotate page (of the prompt sets and annotators picked, if any)"
                  if prompts < 2 else "change the held-out share of prompts: it left no comparison on one side")
        raise NotEnoughData(f"need comparisons on at least 2 prompts (one to train on, one held out); have "
                            f"{n_pairs(train + validation)} comparisons on {prompts} prompt(s): {advice}.")


def ranking_loss(rewards: torch.Tensor, batch, log_nu: torch.Tensor | None = None) -> torch.Tensor:
    """The batch's loss: K-wise Bradley-Terry, or with a tie parameter Davidson's (ties teach too)."""
    if log_nu is None:
        return kwise_loss(rewards, batch.better, batch.worse, batch.ranking_of_pair, batch.ranking_weight)
    return davidson_loss(rewards, batch.better, batch.worse, batch.ranking_of_pair, batch.tied_a, batch.tied_b,
                         batch.ranking_of_tie, log_nu, batch.ranking_weight)


def tie_share(examples) -> float:
    """Tied pairs among all the pairs the rankings imply."""
    tied = sum(len(tied_pairs(e.groups)) for e in examples)
    return tied / max(1, tied + n_pairs(examples))


@torch.no_grad()
def evaluate(model, batches, device, bf16: bool, log_nu: torch.Tensor | None = None) -> dict:
    """Validation loss, pairwise accuracy, reward distribution and a calibration table; with a tie parameter, how often
    the held-out pairs tie against how often the model says they would (Davidson's P(tie), on tied and strict pairs)."""
    model.eval()
    losses, rewards_all, diffs, rankings, offset, tie_odds = [], [], [], [], 0, {"tied": [], "strict": []}
    for batch in batches:
        batch = batch.to(device)
        with autocast(device, bf16):
            rewards = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        if log_nu is not None:
            tie_odds["tied"].append(tie_probability(rewards[batch.tied_a] - rewards[batch.tied_b], log_nu).float())
            tie_odds["strict"].append(tie_probability(rewards[batch.better] - rewards[batch.worse], log_nu).float())
        if batch.n_pairs:
            losses.append((kwise_loss(rewards, batch.better, batch.worse, batch.ranking_of_pair).item(), batch.n_pairs))
            diffs.append(rewards[batch.better] - rewards[batch.worse])
            rankings.append(batch.ranking_of_pair.cpu() + offset)
            offset += int(batch.ranking_of_pair.max()) + 1
        rewards_all.append(rewards)
    model.train()
    rewards = torch.cat(rewards_all).cpu()
    diff = torch.cat(diffs).cpu().float()  # r_better - r_worse for every human pair
    correct = (diff > 0).float() + 0.5 * (diff == 0).float()  # [P] a reward tie counts 0.5
    return {
        "val/loss": sum(l * n for l, n in losses) / sum(n for _, n in losses),
        "val/accuracy": correct.mean().item(),
        "val/accuracy_ci": ranking_bootstrap_interval(correct, torch.cat(rankings)),
        "val/pairs": len(diff),
        "reward/mean": rewards.mean().item(),
        "reward/std": rewards.std().item() if len(rewards) > 1 else 0.0,
        "reward/quantiles": torch.quantile(rewards, torch.linspace(0, 1, 11)).tolist(),
        "calibration": calibration_table(diff),
        **(tie_figures(tie_odds) if log_nu is not None else {}),
    }


def tie_figures(tie_odds: dict[str, list[torch.Tensor]]) -> dict:
    """Held-out ties: the share of pairs tied, the mean predicted P(tie) over all pairs (calibrated: the two agree),
    and the mean P(tie) on the tied and on the strict pairs (it should be higher on the tied ones)."""
    tied, strict = (torch.cat(tie_odds[k]).cpu() if tie_odds[k] else torch.zeros(0) for k in ("tied", "strict"))
    every = torch.cat([tied, strict])
    mean = lambda t: t.mean().item() if len(t) else None  # noqa: E731
    return {"val/tie_share": len(tied) / max(1, len(every)), "val/tie_predicted": mean(every),
            "val/tie_probability_on_ties": mean(tied), "val/tie_probability_on_strict": mean(strict)}


def ranking_bootstrap_interval(correct: torch.Tensor, ranking: torch.Tensor, resamples: int = 1000, seed: int = 0) -> list[float]:
    """95% interval of the pair accuracy, resampling whole rankings (a ranking's pairs are not independent); from a
    single ranking nothing can be said: [0, 1].
    correct [P] in {0, 0.5, 1}, ranking [P] the ranking each pair came from -> [low, high]"""
    _, cluster = ranking.unique(return_inverse=True)  # [P] 0..C-1
    C = int(cluster.max()) + 1 if len(cluster) else 0
    if C < 2:  # one ranking resampled is itself every time: a zero-width interval would look certain
        return [0.0, 1.0]
    right = torch.zeros(C).index_add_(0, cluster, correct)  # [C] correct pairs per ranking
    pairs = torch.bincount(cluster, minlength=C).float()  # [C]
    draws = torch.randint(C, (resamples, C), generator=torch.Generator().manual_seed(seed))  # [R, C]
    accuracy = right[draws].sum(1) / pairs[draws].sum(1)  # [R]
    return torch.quantile(accuracy, torch.tensor([0.025, 0.975])).tolist()


def calibration_table(diff: torch.Tensor) -> list[dict]:
    """Predicted P(better) = sigmoid(r_a - r_b) in buckets, against how often humans agreed.

    Both orientations of each pair are counted, so the table covers 0..1 symmetrically.
    """
    predicted = torch.sigmoid(torch.cat([diff, -diff]))  # [2P]
    observed = torch.cat([torch.ones_like(diff), torch.zeros_like(diff)])  # [2P]
    bucket = (predicted * CALIBRATION_BUCKETS).long().clamp(max=CALIBRATION_BUCKETS - 1)
    table = []
    for b in range(CALIBRATION_BUCKETS):
        in_bucket = bucket == b
        if in_bucket.any():
            table.append({"bucket": f"{b / CALIBRATION_BUCKETS:.1f}-{(b + 1) / CALIBRATION_BUCKETS:.1f}",
                          "pairs": int(in_bucket.sum()), "predicted": predicted[in_bucket].mean().item(),
                          "observed": observed[in_bucket].mean().item()})
    return table


def train_reward_model(examples, config: RewardConfig, on_step=lambda step, total, metrics: None,
                       parallel: DataParallel | None = None, log=lambda line: None,
                       progress=lambda done, total, text: None):
    """Split by prompt, check there is enough, fit (and with `config.learning_curve`, fit on a quarter and a half of
    the training prompts too). Returns (model, tokenizer, metrics, {"train": ids, "validation": ids})."""
    # an all-tied ranking implies no strict pair: it teaches only with Davidson's ties
    examples = [e for e in examples if len(e.groups) > 1 or (config.ties == "davidson" and tied_pairs(e.groups))]
    train, validation = split_by_prompt(examples, config.validation_fraction, config.seed)
    check_enough(train, validation)
    model, tokenizer, metrics = fit(train, validation, config, on_step, parallel)
    metrics.update(diagnostics.length_rule_accuracy(train, validation))
    if config.learning_curve:
        metrics["val/learning_curve"] = learning_curve(train, validation, config, metrics, parallel, log, progress)
    return model, tokenizer, metrics, {"train": sorted({e.prompt_id for e in train}),
                                       "validation": sorted({e.prompt_id for e in validation})}


def learning_curve(train, validation, config: RewardConfig, full: dict, parallel: DataParallel | None = None,
                   log=lambda line: None, progress=lambda done, total, text: None) -> list[dict]:
    """Held-out accuracy against the number of training rankings: models trained from scratch on a quarter and on a
    half of the training prompts (nested, the same held-out prompts), then the full model's own figure."""
    prompts = sorted({e.prompt_id for e in train})
    random.Random(config.seed).shuffle(prompts)
    points = []
    for n, share in enumerate(LEARNING_CURVE_SHARES, 1):
        kept = set(prompts[:max(1, round(share * len(prompts)))])
        subset = [e for e in train if e.prompt_id in kept]
        if n_pairs(subset) == 0:
            continue
        log(f"learning curve: training on {len(subset)} of {len(train)} rankings")
        text = f"learning curve {n}/{len(LEARNING_CURVE_SHARES)}: {len(subset)} rankings"
        _, _, metrics = fit(subset, validation, config, lambda step, total, _: progress(step, total, f"{text} · step {step}/{total}"),
                            parallel)
        points.append({"rankings": len(subset), "accuracy": metrics["val/accuracy"]})
        log(f"learning curve: {len(subset)} rankings -> held-out accuracy {metrics['val/accuracy']:.0%}")
    return points + [{"rankings": len(train), "accuracy": full["val/accuracy"]}]


def fit(train, validation, config: RewardConfig, on_step=lambda step, total, metrics: None, parallel: DataParallel | None = None):
    """The training loop on in-memory rankings. Returns (model, tokenizer, metrics)."""
    torch.manual_seed(config.seed)
    parallel = parallel or DataParallel(config.device)  # under `accelerate launch`: this process's share, gradients averaged
    device = parallel.device
    model, tokenizer = new_reward_model(config)
    if config.gradient_checkpointing:
        checkpointing.enable(model)
    bf16 = use_bf16(config.bf16, device, model.config)
    parallel.prepare(model).train()
    report = on_step if parallel.is_main else lambda step, total, metrics: None
    val_batches = make_batches(validation, tokenizer, model.kind, config.max_length, config.batch_size * 2, shuffle=False)
    epoch_batches = [parallel.shard(make_batches(train, tokenizer, model.kind, config.max_length, config.batch_size, shuffle=True,
                                                 seed=config.seed + e)) for e in range(config.epochs)]
    total = sum(len(b) for b in epoch_batches)
    groups = [{"params": list(model.parameters())}]
    log_nu = None
    if config.ties == "davidson":  # Davidson's tie rate, one scalar, learnt faster than the network's weights
        log_nu = torch.nn.Parameter(torch.tensor(initial_log_nu(tie_share(train)), device=device))
        groups.append({"params": [log_nu], "lr": TIE_LEARNING_RATE, "weight_decay": 0.0})
        parallel.params.append(log_nu)  # averaged over the processes like the model's gradients
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = warmup_then_decay(optimizer, total, int(total * config.warmup_ratio))
    step, started, tokens, pairs_seen, eval_seconds = 0, time.perf_counter(), 0, 0, 0.0
    for epoch, batches in enumerate(epoch_batches):
        for batch in batches:
            batch = batch.to(device)
            with autocast(device, bf16):
                rewards = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)  # [N]
            loss = ranking_loss(rewards, batch, log_nu)
            parallel.backward(loss)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            release_freed_memory()  # the step's gradients and gathered weights, so the heap does not grow step by step
            step += 1
            tokens += batch.n_tokens
            pairs_seen += batch.n_pairs
            elapsed = time.perf_counter() - started - eval_seconds
            metrics = {"train/epoch": epoch, "train/loss": loss.item(), "train/lr": schedule.get_last_lr()[0],
                       "train/accuracy": pairwise_accuracy(rewards.detach(), batch.better, batch.worse),
                       "speed/pairs_per_s": pairs_seen / elapsed, "speed/tokens_per_s": tokens / elapsed,
                       **({"train/tie_nu": log_nu.exp().item()} if log_nu is not None else {})}
            if step == total or step % max(1, total // (4 * config.epochs)) == 0:
                eval_started = time.perf_counter()
                evaluation = evaluate(model, val_batches, device, bf16, log_nu)
                metrics.update({k: v for k, v in evaluation.items() if k.startswith("val/") and isinstance(v, (int, float))})
                eval_seconds += time.perf_counter() - eval_started
            report(step, total, metrics)
    seconds = time.perf_counter() - started - eval_seconds  # training only: the periodic validation is not counted
    final = evaluate(model, val_batches, device, bf16, log_nu)
    final.update({**({"tie_nu": log_nu.exp().item()} if log_nu is not None else {}), "train/rankings": len(train), "train/pairs": n_pairs(train), "val/rankings": len(validation),
                  "train/seconds": seconds, "train/pairs_per_s": pairs_seen / seconds,
                  "train/tokens_per_s": tokens / seconds, "steps": step})
    return model, tokenizer, final


def run_job(db, config: RewardConfig, job) -> dict:
    """Job body: load rankings, train, save atomically, register the version."""
    parallel = DataParallel(config.device, strategy=config.strategy)
    examples = load_rankings(db, config.prompt_sets or None, config.annotators or None) if parallel.is_main else None
    if parallel.is_main and config.weighting == "reliability":
        examples = weighted_by_reliability(db, examples)
        job.log(weights_line(examples))
    examples = parallel.share(examples, as_type=RankingExample)  # the same rankings and weights everywhere
    job.log(f"{len(examples)} rankings, {n_pairs(examples)} comparisons; backbone {config.backbone}")
    precision = precision_for(config.bf16, parallel.device, model_config(config.backbone))
    job.fact("precision", str(precision))
    job.phase(f"training on {len(examples)} rankings")

    def on_step(step, total, metrics):
        job.metrics(step, metrics)
        job.step_progress(step, total, f"loss {metrics['train/loss']:.3f}")

    model, tokenizer, metrics, prompt_ids = train_reward_model(examples, config, on_step, parallel, job.log, job.progress)
    whole_state = parallel.full_state(model)  # sharded: every process sends its shard, the first one saves
    if not job.writes:  # one process of several under `accelerate launch`: the first one saves
        return {}
    job.phase("saving")
    name = config.name or versions.default_version_name("rm")
    folder = versions.save_atomically(db, "reward", name,
                                      lambda tmp: save_reward_model(model, tokenizer, config, metrics, tmp, prompt_ids, whole_state))
    activate, activation = gate.decide(config.activate, gate.reward_model_gate(metrics))
    version_id = versions.register_version(db, "reward", name, str(folder), config=asdict(config), metrics=metrics,
                                           activate=activate)
    job.log(f"saved {name}: held-out accuracy {metrics['val/accuracy']:.0%} on {metrics['val/pairs']} pairs; {activation}")
    if activate and (scoring := uncertainty.score_in_background(db)):  # the queues follow the new active model
        job.log(f"job {scoring} scores the least-certain-first queues with it")
    return {"version": version_id, "name": name, "activation": activation, "precision": str(precision), "val/accuracy": round(metrics["val/accuracy"], 4),
            "val/loss": round(metrics["val/loss"], 4)}




if __name__ == "__main__":
    raise SystemExit(job_main("train_rm", RewardConfig, run_job))
