"""Did a round of the loop work, or did it learn length? Pure functions shared by the trainers and their screens.

A reward model that likes longer (or shorter) answers can be gamed by writing longer (or shorter) answers. These
figures tell that apart: a length-only rule's accuracy beside the reward model's; for a policy update, the
correlation of reward with length on the new samples, and a win rate with length held fixed (among new-old pairs of
similar length).
"""

import math

from data.rankings import ranking_to_pairs
from training.gate import MIN_HELD_OUT_RANKINGS, MIN_PAIRS, span, too_few_held_out_rankings


def held_out_figures(metrics: dict) -> dict:
    """A run's held-out figures for its job's result: the numbers, floats to 4 places, the pair counts with them (a
    win rate is shown with the n it rests on).

    >>> held_out_figures({"val/win_rate": 0.62512, "val/win_pairs": 4, "val/gated": True, "train/loss": 0.3})
    {'val/win_rate': 0.6251, 'val/win_pairs': 4}
    """
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
            if k.startswith("val/") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def correlation(xs: list[float], ys: list[float]) -> float:
    """Pearson correlation; 0 when either side does not vary.

    >>> round(correlation([1, 2, 3], [2, 4, 7]), 3)
    0.993
    >>> correlation([1, 1, 1], [1, 2, 3])
    0.0
    """
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def length_controlled_win_rate(reward_gain: list[float], length_gain: list[float], tolerance: float,
                               min_pairs: int = 8) -> tuple[float | None, int]:
    """Win rate of new over old among pairs of similar length (|length difference| <= tolerance): 1 a win, 0.5 a tie,
    0 a loss; None when fewer than `min_pairs` such pairs exist (the lengths barely overlap, so the gain cannot be
    told apart from length). Returns (win rate or None, pairs of similar length).

    >>> length_controlled_win_rate([1, 1, -1, 1, 1, 1], [0, 2, -1, 30, 25, 40], tolerance=3, min_pairs=3)
    (0.6666666666666666, 3)
    >>> length_controlled_win_rate([1, 1, 1], [-30, -25, -40], tolerance=3)
    (None, 0)
    """
    similar = [1.0 if g > 0 else 0.5 if g == 0 else 0.0 for g, d in zip(reward_gain, length_gain) if abs(d) <= tolerance]
    return (sum(similar) / len(similar) if len(similar) >= min_pairs else None), len(similar)


def similar_length_text(metrics: dict) -> str:
    """The length-controlled win rate in words for a log line, its pair count beside it.

    >>> similar_length_text({"val/lc_win_rate": 0.625, "val/lc_pairs": 40})
    '0.62 among 40 pairs of similar length'
    >>> similar_length_text({"val/lc_win_rate": None, "val/lc_pairs": 3})
    'too few pairs of similar length to tell (3)'
    """
    win, pairs = metrics.get("val/lc_win_rate"), metrics.get("val/lc_pairs", 0)
    if win is None:
        return f"too few pairs of similar length to tell ({pairs})"
    return f"{win:.2f} among {pairs} pairs of similar length"


def length_rule_accuracy(train: list, validation: list) -> dict:
    """Held-out accuracy of the rule "the longer answer wins" (or "the shorter", whichever the training rankings
    favour), counted in words, on the same pairs as the reward model; equal lengths count half.

    >>> from training.rankings import RankingExample as R
    >>> train = [R(1, "q", ["a b c", "a"], [[0], [1]]), R(2, "q", ["a b", "a b c d"], [[1], [0]])]
    >>> length_rule_accuracy(train, [R(3, "q", ["x", "x y", "x"], [[1], [0, 2]])])
    {'val/length_rule': 'longer', 'val/length_rule_accuracy': 1.0, 'train/longer_wins': 1.0}
    """
    def differences(examples):  # words of the better minus words of the worse, per pair
        return [len(e.completions[p.chosen].split()) - len(e.completions[p.rejected].split())
                for e in examples for p in ranking_to_pairs(e.groups)]

    def score(d: int, sign: int) -> float:
        return 1.0 if sign * d > 0 else 0.5 if d == 0 else 0.0

    trained = differences(train)
    longer_wins = sum(score(d, 1) for d in trained) / max(1, len(trained))
    sign = 1 if longer_wins >= 0.5 else -1
    held_out = differences(validation)
    return {"val/length_rule": "longer" if sign > 0 else "shorter",
            "val/length_rule_accuracy": sum(score(d, sign) for d in held_out) / max(1, len(held_out)), "train/longer_wins": longer_wins}


def reward_model_verdict(metrics: dict) -> list[tuple[bool, str]]:
    """Plain sentences about a reward model's held-out accuracy: (good news?, sentence)."""
    accuracy, interval = metrics.get("val/accuracy"), metrics.get("val/accuracy_ci")
    rule, by_length = metrics.get("val/length_rule"), metrics.get("val/length_rule_accuracy")
    lines = []
    if accuracy is None:
        return lines
    rising = still_rising(metrics.get("val/learning_curve") or [])
    held_out = metrics.get("val/rankings")
    if too_few_held_out_rankings(metrics):
        lines.append((False, f"Too few rankings to tell: {accuracy:.0%} held-out accuracy is measured on {held_out} held-out "
                             f"ranking{'s' if held_out != 1 else ''} ({metrics.get('val/pairs', '?')} pairs), and a figure "
                             f"means something from about {MIN_HELD_OUT_RANKINGS} held-out rankings. Rank more items, then retrain."))
    elif interval and interval[0] <= 0.5:
        lines.append((False, f"Probably too few rankings for a policy update: held-out accuracy {accuracy:.0%} (95% interval "
                             f"{span(*interval)}) cannot be told apart from chance. Rank more items, then retrain."))
    elif rising:
        lines.append((False, f"Probably too few rankings for a policy update: held-out accuracy is still rising steeply with "
                             f"more rankings ({rising}). Rank more items, then retrain."))
    if by_length is not None and by_length > 0.5 and accuracy - by_length < 0.05:  # a rule at chance explains nothing
        lines.append((False, f"The rule \"the {rule} answer wins\" scores {by_length:.0%} on the same held-out pairs: most of "
                             "what this reward model learned may be length, and a policy update will chase it."))
    if interval and interval[0] > 0.5 and (by_length is None or accuracy - by_length >= 0.05) and not too_few_held_out_rankings(metrics):
        # (from two rankings, every resample can agree: "100% (100-100%)" said beside "too few to tell", walk 2026-12-07)
        beyond = f", {accuracy - by_length:+.0%} over the rule \"the {rule} answer wins\"" if by_length is not None else ""
        lines.append((True, f"Held-out accuracy {accuracy:.0%} (95% interval {span(*interval)}){beyond}."))
    return lines


def still_rising(curve: list[dict], per_doubling: float = 0.03) -> str | None:
    """How the learning curve's last doubling of rankings raised held-out accuracy, when by at least `per_doubling`;
    else None. The curve is [{"rankings", "accuracy"}] by growing size.

    >>> still_rising([{"rankings": 20, "accuracy": 0.55}, {"rankings": 40, "accuracy": 0.6}, {"rankings": 80, "accuracy": 0.66}])
    '60% at 40 rankings, 66% at 80'
    >>> still_rising([{"rankings": 40, "accuracy": 0.7}, {"rankings": 80, "accuracy": 0.71}]) is None
    True
    """
    if len(curve) < 2:
        return None
    before, last = curve[-2], curve[-1]
    doublings = math.log2(last["rankings"] / before["rankings"]) if before["rankings"] else 0
    if doublings <= 0 or (last["accuracy"] - before["accuracy"]) / doublings < per_doubling:
        return None
    return f"{before['accuracy']:.0%} at {before['rankings']} rankings, {last['accuracy']:.0%} at {last['rankings']}"


def verdict(metrics: dict) -> list[tuple[bool, str]]:
    """Plain sentences about a policy update's held-out evaluation, worst news first: (good news?, sentence)."""
    lines = []
    win, lc = metrics.get("val/win_rate"), metrics.get("val/lc_win_rate")
    before, after = metrics.get("val/length_before"), metrics.get("val/length_after")
    pairs = metrics.get("val/win_pairs")
    if win is not None and pairs is not None and pairs < MIN_PAIRS:  # nothing about the gain can be read from so few
        lines.append((False, f"Too few held-out pairs to judge: {pairs} (at least {MIN_PAIRS} needed); a win rate of "
                             f"{win:.0%}, length figures or a correlation on so few say nothing yet. Hold out more prompts "
                             "or samples, then read the examples."))
        return lines  # nor the length warnings: they would be read from the same few samples
    if win is not None and win >= 0.55 and "val/lc_pairs" in metrics and lc is None:
        lines.append((False, f"The gain cannot be told apart from length: the new generator wins {win:.0%} of pairs, but its "
                     f"answers' lengths barely overlap the old ones' ({metrics['val/lc_pairs']} pairs of similar length; mean "
                     f"length {before:.0f} → {after:.0f} tokens). Read the examples before using it."))
    if win is not None and lc is not None and win >= 0.55 and lc < 0.55:
        lines.append((False, f"The gain is explained by length: the new generator wins {win:.0%} of pairs, but only {lc:.0%} "
                     f"of those of similar length (mean length {before:.0f} → {after:.0f} tokens). Read the examples before using it."))
    corr = metrics.get("val/reward_length_corr")
    if corr is not None and abs(corr) >= 0.5:
        lines.append((False, f"The reward model's score follows length closely on the new samples (correlation {corr:+.2f}): "
                     "a policy update can raise it by changing length alone."))
    capped_before, capped_after = metrics.get("val/capped_before"), metrics.get("val/capped_after")
    if capped_before is not None and capped_after is not None and capped_before - capped_after >= 0.25:
        lines.append((False, f"Completions stopped hitting the length cap ({capped_before:.0%} → {capped_after:.0%}): part of the "
                     "update may be learning to stop early."))
    if win is not None and lc is not None and lc >= 0.6:
        lines.append((True, f"The new generator wins {lc:.0%} of pairs of similar length: the gain is not length alone."))
    return lines
