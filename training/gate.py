"""When a trained version may make itself active: only when the admin asked for it and its evaluation says it is better.

A policy update or DPO run: the held-out win rate against the starting generator, judged by the reward model, must
have its 95% lower bound above 0.5 on at least MIN_PAIRS pairs, and the win rate among answers of similar length
must agree (above 0.5): a gain that is only length does not count. A reward model: its held-out accuracy's lower
bound must beat both a coin and the length-only rule on the same pairs. SFT: the validation loss must have fallen.
Each gate returns (passes, why), and the job says why in its log and result.
"""

import itertools
import math
from dataclasses import dataclass

from data.agreement import span, wilson_interval  # the screens import them from here too
from training.rankings import held_out_count

MIN_PAIRS = 30
MIN_HELD_OUT_RANKINGS = 5
MIN_HELD_OUT_DEMONSTRATIONS = 5  # an SFT run's validation loss on fewer is one or two answers' luck
MAX_HELD_OUT_SHARE = 0.5  # the most the reward form holds out: the rest must still train


POLICY_REMEDY = "hold out more prompts, or draw more samples per prompt (K)"
DPO_REMEDY = "rank more prompts (a fifth are held out), or draw more samples per held-out prompt"


def win_rate_figure(rate: float, pairs: int) -> str:
    """A win rate with its 95% interval and n; below MIN_PAIRS pairs, too few to tell.

    >>> win_rate_figure(0.75, 32), win_rate_figure(1.0, 4)
    ('75% (58–87%, n=32)', 'too few to tell (n=4)')
    """
    if pairs < MIN_PAIRS:
        return f"too few to tell (n={pairs})"
    return f"{rate:.0%} ({span(*wilson_interval(rate * pairs, pairs))}, n={pairs})"


def generator_gate(metrics: dict, remedy: str = POLICY_REMEDY) -> tuple[bool, str]:
    """A policy update's or DPO run's held-out evaluation against its start; `remedy`: how its run gets more pairs.

    >>> generator_gate({"val/win_rate": 1.0, "val/win_pairs": 4})
    (False, 'too few held-out pairs to tell: 4, need at least 30 (hold out more prompts, or draw more samples per prompt (K))')
    >>> generator_gate({"val/win_rate": 0.8, "val/win_pairs": 64, "val/lc_win_rate": 0.7, "val/lc_pairs": 20})[0]
    True
    """
    win, n = metrics.get("val/win_rate"), int(metrics.get("val/win_pairs") or 0)
    if win is None:
        return False, ("no held-out win rate (no reward model judged it): read what it writes (Data → Generate with "
                       "this version, or Policy update → Compare once a reward model is active) and make it active by "
                       "hand on the Models screen if you trust it")
    if n < MIN_PAIRS:
        return False, f"too few held-out pairs to tell: {n}, need at least {MIN_PAIRS} ({remedy})"
    low, high = wilson_interval(win * n, n)
    if low <= 0.5:
        return False, f"win rate {win:.0%} on {n} pairs (95% interval {span(low, high)}): not shown better than the start"
    lc = metrics.get("val/lc_win_rate")
    if lc is None:
        return False, (f"win rate {win:.0%} (95% interval {span(low, high)}) but too few answers of similar length to "
                       "rule out that the gain is length")
    if lc <= 0.5:
        return False, f"win rate {win:.0%}, but {lc:.0%} among answers of similar length: the gain looks like length"
    return True, f"win rate {win:.0%} on {n} pairs (95% interval {span(low, high)}), {lc:.0%} at similar length"


def win_pairs_shortfall(prompts: int, samples: int, share: float, most_prompts: int) -> str | None:
    """Why a DPO run on rankings of `prompts` prompts could not pass `generator_gate` whatever it learns (None: it
    could): its win rate rests on one pair per sample of each held-out prompt (`share` of them, at most
    `most_prompts`), and the gate wants MIN_PAIRS.

    >>> win_pairs_shortfall(100, 2, 0.2, 16) is None
    True
    >>> print(win_pairs_shortfall(40, 2, 0.2, 16))
    a run could not make itself active: its win rate would rest on 16 pairs (8 held-out prompts, 2 samples each), fewer than the 30 the gate needs; draw 4 samples per held-out prompt, or rank about 33 more prompts (import more if the set has too few)
    >>> win_pairs_shortfall(200, 1, 0.2, 16).endswith("draw 2 samples per held-out prompt")
    True
    """
    held_out = min(held_out_count(prompts, share), most_prompts) if prompts else 0
    if held_out * samples >= MIN_PAIRS:
        return None
    if samples == 0:
        return "a run could not make itself active: with no samples per held-out prompt it has no win rate"
    remedies = [f"draw {math.ceil(MIN_PAIRS / held_out)} samples per held-out prompt"] if held_out else []
    if most_prompts * samples >= MIN_PAIRS:  # more prompts help only up to the cap
        more = next(n for n in itertools.count(1) if held_out_count(prompts + n, share) * samples >= MIN_PAIRS)
        remedies.append(f"rank about {more} more prompt{'s' if more != 1 else ''} (import more if the set has too few)")
    return (f"a run could not make itself active: its win rate would rest on {held_out * samples} pairs ({held_out} "
            f"held-out prompt{'s' if held_out != 1 else ''}, {samples} sample{'s' if samples != 1 else ''} each), fewer "
            f"than the {MIN_PAIRS} the gate needs; " + ", or ".join(remedies))


def prompts_that_count(share: float, most_prompts: int) -> int:
    """Prompts past which `win_pairs_shortfall` says the same: from there on, `most_prompts` are held out.

    >>> prompts_that_count(0.2, 16)
    83
    """
    return math.ceil((most_prompts + 0.5) / share)


def too_few_held_out_rankings(metrics: dict) -> bool:
    """A reward model's held-out figures rest on fewer than MIN_HELD_OUT_RANKINGS rankings (its interval resamples whole
    rankings: from one, it is no interval); False when the count was not recorded."""
    n = metrics.get("val/rankings")
    return n is not None and n < MIN_HELD_OUT_RANKINGS


def nothing_to_learn(rankings: int, prompts: int, sets: list[str], annotators: list[str] = ()) -> str | None:
    """Why a reward model or DPO run on these rankings (of `sets` and by `annotators`; empty: all) would stop at once
    (None: it can start): none, or all of one prompt (a run holds out whole prompts, and needs one on each side).

    >>> nothing_to_learn(0, 0, ["builtin"])
    'the prompt set builtin has no rankings to learn from: rank some of its items first, or pick another set'
    >>> nothing_to_learn(3, 1, [])
    'every ranking is of one prompt: a run needs rankings of 2 prompts or more (one to train on, one held out)'
    >>> nothing_to_learn(1, 1, ["small"], ["idle"])
    'the rankings of idle in small are of one prompt: a run needs rankings of 2 prompts or more (one to train on, one held out); pick more annotators, or leave the field empty for all'
    """
    if annotators and prompts < 2:
        names, of_sets = ", ".join(annotators), f" in {', '.join(sets)}" if sets else ""
        if rankings:
            return (f"the rankings of {names}{of_sets} are of one prompt: a run needs rankings of 2 prompts or more (one "
                    "to train on, one held out); pick more annotators, or leave the field empty for all")
        return (f"{names} {'have' if len(annotators) > 1 else 'has'} no rankings{of_sets} to learn from: pick other "
                "annotators, or leave the field empty for all")
    if rankings == 0 and not sets:
        return "there are no rankings to learn from yet: rank some items first (Annotate), or import rankings (Data → Import)"
    if rankings == 0:
        several = len(sets) > 1
        return (f"the prompt set{'s' if several else ''} {', '.join(sets)} {'have' if several else 'has'} no rankings to "
                f"learn from: rank some of {'their' if several else 'its'} items first, or pick another set")
    if prompts < 2:
        return "every ranking is of one prompt: a run needs rankings of 2 prompts or more (one to train on, one held out)"
    return None


def too_few_demonstrations(demonstrations: int, prompts: int, sets: list[str]) -> str | None:
    """Why an SFT run on these demonstrations would stop at once (None: it can start): they answer fewer than 2 prompts.

    >>> too_few_demonstrations(1, 1, ["one"])
    'a fine-tune needs demonstrations of 2 prompts or more (one to train on, one held out), and the set picked has 1 demonstration of 1 prompt: write some (Annotate → Write demonstrations) or import them (above)'
    """
    if prompts >= 2:
        return None
    where = ("the sets picked have" if len(sets) > 1 else "the set picked has") if sets else "there are"
    return (f"a fine-tune needs demonstrations of 2 prompts or more (one to train on, one held out), and {where} "
            f"{demonstrations} demonstration{'s' if demonstrations != 1 else ''} of {prompts} prompt"
            f"{'s' if prompts != 1 else ''}: write some (Annotate → Write demonstrations) or import them (above)")


def could_fall_short(rankings: int, share: float) -> bool:
    """Whether `held_out_shortfall` can say anything, before the prompts are counted (a query over every ranking):
    from `share` x rankings >= 10 x MIN_HELD_OUT_RANKINGS on, either 10 prompts or more are held out (a ranking each
    at least) or a prompt has more than 5 rankings on average, so never fewer than the gate needs.

    >>> could_fall_short(249, 0.2), could_fall_short(250, 0.2)
    (True, False)
    """
    return rankings * share < 10 * MIN_HELD_OUT_RANKINGS


@dataclass(frozen=True)
class HeldOut:
    """What a gate judges on held-out examples: their name, how many it needs, what it judges, how more are made, and
    whether the screen has a held-out share to change."""
    what: str = "rankings"
    minimum: int = MIN_HELD_OUT_RANKINGS
    judged: str = "a reward model"
    verb: str = "rank"
    share_field: bool = True


FINE_TUNE = HeldOut("demonstrations", MIN_HELD_OUT_DEMONSTRATIONS, "a fine-tune", "write", share_field=False)


def held_out_shortfall(examples: int, prompts: int, share: float, kind: HeldOut = HeldOut()) -> str | None:
    """Why a reward model (or, with FINE_TUNE, an SFT run) trained now on `examples` rankings (demonstrations) of
    `prompts` prompts, `share` of the prompts held out (with all their examples: `split_by_prompt`), could not pass its
    gate whatever it learns (None: it could). The held-out examples are counted as the held-out prompts times the
    examples a prompt has on average.

    >>> held_out_shortfall(24, 24, 0.2) is None
    True
    >>> print(held_out_shortfall(15, 15, 0.2))
    about 3 of the 15 rankings would be held out (3 of the 15 prompts, a share of 0.2: a prompt's rankings are held out together), fewer than the 5 the gate needs to judge a reward model, so it could not be made active: hold out a share of 0.35 or more, or rank about 8 more on 8 new prompts (import more prompts if the set has too few)
    >>> held_out_shortfall(12, 6, 0.4).endswith("hold out a share of 0.45 or more, or rank about 2 more on 1 new prompt (import more prompts if the set has too few)")
    True
    >>> held_out_shortfall(8, 8, 0.2).endswith("could not be made active: rank about 15 more on 15 new prompts (import more prompts if the set has too few)")
    True
    >>> held_out_shortfall(4, 4, 0.2, FINE_TUNE).endswith("judge a fine-tune, so it could not be made active: write about 19 more on 19 new prompts (import more prompts if the set has too few)")
    True
    """
    per_prompt = examples / max(prompts, 1)

    def held_out(n_prompts: int, s: float) -> float:
        return held_out_count(n_prompts, s) * per_prompt

    if held_out(prompts, share) >= kind.minimum:
        return None
    shares = [s / 20 for s in range(1, int(MAX_HELD_OUT_SHARE * 20) + 1)]  # the form's steps of 0.05
    wanted_share = next((s for s in shares if held_out(prompts, s) >= kind.minimum), None) if kind.share_field else None
    new_prompts = next(n for n in itertools.count(1) if held_out(prompts + n, share) >= kind.minimum)
    return (f"about {round(held_out(prompts, share))} of the {examples} {kind.what} would be held out "
            f"({held_out_count(prompts, share)} of the {prompts} prompts, a share of {share:g}: a prompt's {kind.what} are "
            f"held out together), fewer than the {kind.minimum} the gate needs to judge {kind.judged}, so it "
            "could not be made active: " + (f"hold out a share of {wanted_share:g} or more, or " if wanted_share else "")
            + f"{kind.verb} about {math.ceil(new_prompts * per_prompt)} more on {new_prompts} new prompt{'s' if new_prompts != 1 else ''}"
            " (import more prompts if the set has too few)")


def reward_model_gate(metrics: dict) -> tuple[bool, str]:
    """
    >>> reward_model_gate({"val/accuracy": 0.7, "val/accuracy_ci": [0.62, 0.78], "val/length_rule_accuracy": 0.55, "val/rankings": 30})[0]
    True
    >>> reward_model_gate({"val/accuracy": 0.6, "val/accuracy_ci": [0.45, 0.75], "val/length_rule_accuracy": 0.5})[1]
    'held-out accuracy 60% (95% interval 45–75%): its lower bound does not beat a coin (50%)'
    """
    accuracy, interval = metrics.get("val/accuracy"), metrics.get("val/accuracy_ci")
    if accuracy is None or not interval:
        return False, "no held-out accuracy: too few rankings held out to judge it"
    if too_few_held_out_rankings(metrics):
        return False, (f"too few held-out rankings to tell: {metrics['val/rankings']}, need at least {MIN_HELD_OUT_RANKINGS} (rank more, or hold "
                       "out a larger share)")
    rule = metrics.get("val/length_rule_accuracy") or 0.0
    bar, what = (rule, f"the length-only rule ({rule:.0%})") if rule > 0.5 else (0.5, "a coin (50%)")
    if interval[0] <= bar:
        return False, (f"held-out accuracy {accuracy:.0%} (95% interval {span(*interval)}): its lower bound does not "
                       f"beat {what}")
    return True, f"held-out accuracy {accuracy:.0%} (95% interval {span(*interval)}) beats {what}"


def sft_gate(metrics: dict) -> tuple[bool, str]:
    """The validation loss fell, on at least MIN_HELD_OUT_DEMONSTRATIONS held-out demonstrations (versions from before
    their count was kept are judged on the loss alone).

    >>> sft_gate({"val/loss_before": 2.0, "val/loss": 1.5, "val/demonstrations": 8})
    (True, 'validation loss 2.000 -> 1.500 on 8 held-out demonstrations')
    >>> sft_gate({"val/loss_before": 2.575, "val/loss": 2.528, "val/demonstrations": 1})[1]
    'too few held-out demonstrations to tell: 1, need at least 5 (write more, or hold out a larger share)'
    """
    before, after, n = metrics.get("val/loss_before"), metrics.get("val/loss"), metrics.get("val/demonstrations")
    if n is not None and n < MIN_HELD_OUT_DEMONSTRATIONS:
        return False, (f"too few held-out demonstrations to tell: {n}, need at least {MIN_HELD_OUT_DEMONSTRATIONS} (write "
                       "more, or hold out a larger share)")
    if before is None or after is None or after >= before:
        return False, f"validation loss did not fall ({before} -> {after})"
    return True, f"validation loss {before:.3f} -> {after:.3f}" + (f" on {n} held-out demonstrations" if n else "")


def decide(asked: bool, gate: tuple[bool, str]) -> tuple[bool, str]:
    """(activate, the sentence for the job's log and result)."""
    passes, why = gate
    if not asked:
        return False, f"not made active (not asked for; make it active on the Models screen): {why}"
    return (True, f"made active: {why}") if passes else (False, f"not made active: {why}")


def evaluation_summary(metrics: dict) -> str:
    """One line for the Models table: the figure its gate reads, with its n and 95% interval.

    >>> evaluation_summary({"val/win_rate": 0.75, "val/win_pairs": 32, "val/lc_win_rate": 0.6})
    'win rate 75% (58–87%, n=32); 60% at similar length'
    >>> evaluation_summary({"val/win_rate": 1.0, "val/win_pairs": 4})
    'win rate: too few to tell (n=4)'
    >>> evaluation_summary({"val/accuracy": 0.5, "val/accuracy_ci": [0.5, 0.5], "val/rankings": 1, "val/pairs": 6})
    'accuracy 50%: too few to tell (1 held-out ranking, 6 pairs)'
    """
    if metrics.get("val/win_rate") is not None:
        pairs, lc = int(metrics.get("val/win_pairs") or 0), metrics.get("val/lc_win_rate")
        figure = win_rate_figure(metrics["val/win_rate"], pairs)
        if pairs < MIN_PAIRS:
            return f"win rate: {figure}"
        return f"win rate {figure}" + (f"; {lc:.0%} at similar length" if lc is not None else "")
    rankings = metrics.get("val/rankings")
    if metrics.get("val/accuracy_ci") and too_few_held_out_rankings(metrics):
        return (f"accuracy {metrics['val/accuracy']:.0%}: too few to tell ({rankings} held-out "
                f"ranking{'s' if rankings != 1 else ''}, {metrics.get('val/pairs', '?')} pairs)")
    if metrics.get("val/accuracy_ci"):
        rule = metrics.get("val/length_rule_accuracy")
        return (f"accuracy {metrics['val/accuracy']:.0%} ({span(*metrics['val/accuracy_ci'])}, n={metrics.get('val/pairs', '?')} "
                f"pairs)" + (f"; length rule {rule:.0%}" if rule is not None else ""))
    if metrics.get("val/loss") is not None and metrics.get("val/loss_before") is not None:
        n = metrics.get("val/demonstrations")
        return (f"validation loss {metrics['val/loss_before']:.3f} -> {metrics['val/loss']:.3f}"
                + ("" if n is None else f" (n={n} held-out demonstration{'s' if n != 1 else ''}"
                   + ("" if n >= MIN_HELD_OUT_DEMONSTRATIONS else ": too few to tell") + ")"))
    if metrics.get("val/accuracy") is not None:
        return f"held-out pair accuracy {metrics['val/accuracy']:.0%} (n={metrics.get('val/pairs', '?')})"
    return ""


def gate_for(version: dict) -> tuple[bool, str]:
    """The gate that applies to a stored version (data.versions): a reward model's, an SFT run's (its config has
    early stopping), a policy update's or DPO run's; a generator trained by none of them has nothing to compare with."""
    config, metrics = version["config"], version["metrics"]
    if version["kind"] == "reward":
        return reward_model_gate(metrics)
    if "early_stop_patience" in config:
        return sft_gate(metrics)
    if "algorithm" in config:
        return generator_gate(metrics)
    if "beta" in config:
        return generator_gate(metrics, DPO_REMEDY)
    return False, NOT_TRAINED_HERE


NOT_TRAINED_HERE = "not trained here (a starting or registered model): no evaluation against a start to gate on"


def has_gate(version: dict) -> bool:
    """Whether the version was trained here and so has an evaluation to pass (a starting model has none: nothing
    to compare it with, which is not a failure)."""
    return gate_for(version)[1] != NOT_TRAINED_HERE
