"""How unsure a reward model is about each open item: what the 'uncertain' queue order serves first.

    python -m rm.uncertainty [--prompt-sets a,b] [--rescore true]

The job `score_queue`, with the active reward model. It is started (data.uncertainty.score_in_background) when an
admin makes a reward model active or puts a set in the 'uncertain' order, when a reward-model training activates
its model, and when a generation adds items to such a set. A newer one supersedes any still queued or running.
"""

import time

import torch

from data import uncertainty, versions
from data.jobs import job_main
from rm.config import UncertaintyConfig
from rm.score import RewardScorer

ITEMS_PER_WRITE = 256  # items scored between two writes (and two progress reports)


def ranking_uncertainty(rewards: torch.Tensor) -> float:
    """How unsure the Bradley-Terry model is of the order of one item's K completions: the mean over its pairs of
    1 - |2 P(i beats j) - 1|, 1 when every pair is a coin flip, towards 0 when it is sure of every pair.

    >>> ranking_uncertainty(torch.tensor([0.3, 0.3, 0.3]))
    1.0
    >>> round(ranking_uncertainty(torch.tensor([5.0, 0.0])), 4)  # P = 0.9933
    0.0134
    """
    i, j = torch.triu_indices(len(rewards), len(rewards), offset=1)  # [P] each pair once
    p_first = torch.sigmoid(rewards[i] - rewards[j])  # [P] P(completion i is ranked above j)
    return (1 - (2 * p_first - 1).abs()).mean().item()


def refresh_queue(db, scorer: RewardScorer, reward_version_id: int, log, progress=lambda done, total, text: None,
                  prompt_sets: list[str] | None = None, rescore: bool = False) -> int:
    """Score the open items of the 'uncertain' sets (or of these sets) and store each one's uncertainty, a chunk at a
    time so that the queue improves while it runs. Stops when this model is no longer the active one (the store then
    refuses its scores). Returns the number of items scored and stored."""
    item_ids = uncertainty.items_to_score(db, reward_version_id, prompt_sets, rescore)
    if not item_ids:
        log("queue: no open item to score in a set in the 'uncertain' order")
        return 0
    log(f"queue: scoring {len(item_ids):,} open items with reward model version {reward_version_id}")
    started, done = time.perf_counter(), 0
    for start in range(0, len(item_ids), ITEMS_PER_WRITE):
        rows = uncertainty.completions_to_score(db, item_ids[start:start + ITEMS_PER_WRITE])
        rewards = scorer.score([prompt for _, prompt, _ in rows], [text for _, _, text in rows])  # [completions]
        per_item: dict[int, list[int]] = {}
        for index, (item_id, _, _) in enumerate(rows):
            per_item.setdefault(item_id, []).append(index)
        if not uncertainty.store_uncertainty(db, reward_version_id,
                                             [(item_id, ranking_uncertainty(rewards[at])) for item_id, at in per_item.items()]):
            log(f"queue: stopped after {done:,} items: another reward model is active now (its own scoring job takes over)")
            break
        before, done = done, done + len(per_item)
        rate = done / (time.perf_counter() - started)
        message = f"{done:,}/{len(item_ids):,} items scored · {rate:.0f} items/s · ETA {(len(item_ids) - done) / rate:.0f} s"
        progress(done, len(item_ids), message)
        if 10 * done // len(item_ids) > 10 * before // len(item_ids):  # every tenth, in the log and the terminal
            log(f"queue: {message}")
    return done


def run_uncertainty(db, config: UncertaintyConfig, job) -> dict:
    """Job body: load the active reward model, score the open items, store their uncertainty."""
    version = versions.version_or_active(db, "reward", None)
    job.log(f"reward model {version['name']} ({version['path']})")
    job.phase("loading the reward model")
    scorer = RewardScorer(version["path"], config.device, config.batch_size)
    job.phase("scoring the open items")
    scored = refresh_queue(db, scorer, version["id"], job.log, job.progress, config.prompt_sets or None, config.rescore)
    return {"reward_version": version["id"], "items": scored}


if __name__ == "__main__":
    raise SystemExit(job_main("score_queue", UncertaintyConfig, run_uncertainty))
