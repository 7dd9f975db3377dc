"""People check the reward model's favourites: after a policy update (or a DPO run judged by a reward model), the
held-out pairs on which the reward model (or the AI judge that rewarded the policy update) prefers the new generator's answer over the starting one's by the widest
margin go into the annotation queue as ordinary items of two answers, in a set of their own ('spot-check-<version>',
served before the other sets to the people the run's prompt sets are served to, under their guidelines,
RANKINGS_PER_PAIR rankings each, more when there are too few pairs for a verdict, at most one per person served). Annotators are not told which answer is which (the
display order is shuffled per annotator, as for any item), and their rankings are ordinary rankings (a later reward
model learns from them).

The verdict is the share of those rankings that agree with the reward model (the new answer ranked above the old; a
tie counts half), with its 95% interval. A policy that learnt to please the reward model rather than people shows
here first: once MIN_RANKINGS are in and the share is below GAMED_BELOW, the version is not made active
(`activate`, which the Models screen calls, refuses) and the screens say that the reward model is being gamed. While the rankings
are still coming in, a job asked to activate its version leaves it to the admin (Train → Models).
"""

import math

from sqlite_utils import Database

from data import guidelines, prompt_sets, versions
from data.accounts import User
from data.agreement import span, wilson_interval
from data.items import NewCompletion, add_item, add_prompt, ensure_prompt_set
from data.store import now, write_transaction

SET_PREFIX = "spot-check-"
RANKINGS_PER_PAIR = 3
MIN_RANKINGS = 6
GAMED_BELOW = 0.5


def set_name(version_name: str) -> str:
    return SET_PREFIX + version_name


def spot_check_sets_last(names: list[str]) -> list[str]:
    """Prompt sets to train on, a project's own first: a spot check's set holds a few pairs' prompts.

    >>> spot_check_sets_last(["spot-check-policy-1", "mine", "builtin"])
    ['mine', 'builtin', 'spot-check-policy-1']
    """
    return sorted(names, key=lambda name: name.startswith(SET_PREFIX))


def favourites(examples: list[dict], n: int) -> list[dict]:
    """Up to `n` of an evaluation's examples (prompt, before, after and their rewards; the reward model's biggest gains
    first) on which the reward model prefers the new answer.

    >>> favourites([{"before": "a", "after": "b", "before_reward": 0, "after_reward": 1},
    ...             {"before": "c", "after": "d", "before_reward": 1, "after_reward": 0}], 8)[0]["after"]
    'b'
    """
    return [e for e in examples if e["after_reward"] > e["before_reward"] and e["after"] != e["before"]][:n]


def at_checkpoint(pair: dict, step: int, kl: float) -> dict:
    """A favourite pair marked with the training step of the policy that wrote its new answer, and that policy's KL."""
    return {**pair, "step": step, "kl": kl}


def checkpoint_of(step: int, evaluation: dict) -> dict:
    """What a checkpoint's spot check needs of its held-out evaluation: its step, KL, win rate and example pairs."""
    return {"step": step, "val/kl": evaluation["val/kl"], "val/win_rate": evaluation["val/win_rate"],
            "examples": evaluation["examples"]}


def pairs_to_queue(checkpoints: list[dict], final_step: int, final: dict, n: int) -> tuple[list[dict], int]:
    """(pairs, how many from earlier checkpoints): the favourites of the final evaluation `final`, and of each
    checkpoint of another step, each marked with its step and KL when there are several checkpoints (a checkpoint
    at `final_step` holds the final weights: its pairs would be the final ones again)."""
    last = favourites(final.get("examples", []), n)
    seen = {(p["prompt"], p["after"], p["before"]) for p in last}  # a pair two checkpoints wrote alike is ranked once
    earlier = []
    for c in (c for c in checkpoints if c["step"] != final_step):
        for pair in favourites(c["examples"], n):
            if (key := (pair["prompt"], pair["after"], pair["before"])) not in seen:
                seen.add(key)
                earlier.append(at_checkpoint(pair, c["step"], c["val/kl"]))
    if earlier:
        last = [at_checkpoint(pair, final_step, final["val/kl"]) for pair in last]
    return earlier + last, len(earlier)


def without_examples(checkpoints: list[dict]) -> list[dict]:
    """The checkpoints as a version's metrics keep them: their examples went to the queue."""
    return [{key: value for key, value in c.items() if key != "examples"} for c in checkpoints]


def rewarder(judged: bool) -> str:
    """What gave a policy update its reward, in words: an AI judge or the reward model."""
    return "the judge" if judged else "the reward model"


def held_for_people(activate: bool, activation: str, pairs: list[dict], by: str = "the reward model") -> tuple[bool, str]:
    """A job asked to make its version active leaves it to the admin while people have its favourites to check."""
    if not activate or not pairs:
        return activate, activation
    return False, (f"{activation}; not made active yet: people first rank {by}'s {len(pairs)} favourite "
                   f"pairs (make it active on Train → Models once they agree with it)")


def queue_pairs(db: Database, version: dict, start: dict, pairs: list[dict], source_sets: list[str] = (),
                queued_by: str = "") -> dict:
    """Put the reward model's favourite pairs (from `favourites`) into the queue, in a set served to the people the
    run's prompt sets (`source_sets`; none: every set) are served to, under their guidelines when they share one, each
    pair wanting enough rankings for a verdict (at most one from each of those people). `queued_by`: the job, for the
    audit log. Returns {"set", "pairs"}."""
    if not pairs:
        return {"set": None, "pairs": 0}
    name = set_name(version["name"])
    with write_transaction(db):  # the whole set or none of it
        top = db.execute("SELECT COALESCE(MAX(priority), 0) FROM prompt_sets").fetchone()[0]
        ensure_prompt_set(db, name)
        prompt_sets.configure(db, name, priority=min(100, top + 1), status="active",  # before the items: they take its priority
                  assign=served_to(db, source_sets), by=queued_by)
        people = len(prompt_sets.served_people(db, name))  # each ranks a pair once: more would never finish
        prompt_sets.configure(db, name, rankings_wanted=max(1, min(rankings_per_pair(len(pairs)), people or RANKINGS_PER_PAIR)),
                              by=queued_by)
        _copy_guidelines(db, source_sets, name)
        for example in pairs:
            prompt_id, _ = add_prompt(db, name, example["prompt"])
            checkpoint = {key: example[key] for key in ("step", "kl") if key in example}
            add_item(db, prompt_id, [NewCompletion(example["after"], version["id"], version["name"], params=checkpoint,
                                                   **sampled_as(example, "after")),
                                     NewCompletion(example["before"], start["id"], start["name"], **sampled_as(example, "before"))])
    return {"set": name, "pairs": len(pairs)}


def sampled_as(example: dict, side: str) -> dict:
    """The length and end of an example's answer (`side`: before or after) as a completion stores them, so that the
    annotator sees a cut answer marked as cut; {} for an example saved without them.

    >>> sampled_as({"after_tokens": 64, "after_ended": False}, "after"), sampled_as({}, "before")
    ({'n_tokens': 64, 'finish_reason': 'length'}, {})
    """
    if f"{side}_ended" not in example:
        return {}
    return {"n_tokens": example.get(f"{side}_tokens"), "finish_reason": "eos" if example[f"{side}_ended"] else "length"}


def rankings_per_pair(pairs: int) -> int:
    """What each pair wants: RANKINGS_PER_PAIR, or more when there are too few pairs for MIN_RANKINGS.

    >>> rankings_per_pair(4), rankings_per_pair(1)
    (3, 6)
    """
    return max(RANKINGS_PER_PAIR, math.ceil(MIN_RANKINGS / max(pairs, 1)))


def served_to(db: Database, source_sets: list[str]) -> list[str]:
    """The annotators every one of these sets is served to, together ([]: everyone, as when any of them, or no set, is
    served to everyone)."""
    people: set[str] = set()
    for source in source_sets:
        assigned = prompt_sets.assigned(db, source)
        if not assigned:
            return []
        people.update(assigned)
    return sorted(people)


def _copy_guidelines(db: Database, source_sets: list[str], name: str) -> None:
    """The sources' current guidelines as the spot-check set's first version, when they have one text among them."""
    current = {source: guidelines.current_guidelines(db, source) for source in source_sets}
    if len({g.text for g in current.values() if g}) != 1:
        return
    source = next(s for s, g in current.items() if g)
    db.execute("""INSERT INTO guidelines (prompt_set, version, text, author_id, created_at)
                  SELECT ?, 1, text, author_id, ? FROM guidelines WHERE prompt_set = ? ORDER BY version DESC LIMIT 1""",
               [name, now(), source])


def queue_for_people(db: Database, version_id: int, start: dict, pairs: list[dict], earlier: int, by: str,
                     asked: int, source_sets: list[str] = (), queued_by: str = "") -> str:
    """Queue a new version's favourite pairs (`queue_pairs`); what the job's log says of it. `asked`: the most pairs
    a checkpoint may give (only held-out pairs whose new answer the reward prefers, each once, qualify); `queued_by`:
    the job, for the audit log."""
    queued = queue_pairs(db, versions.get_version(db, version_id), start, pairs, source_sets, queued_by)
    return (f"spot check: {queued['pairs']} of {by}'s favourite held-out pairs queued for people to rank (up to "
            f"{asked} a checkpoint: those where it prefers the new answer, each pair once), in the prompt set "
            f"{queued['set']}" + (f"; {earlier} of them from earlier checkpoints" if earlier else ""))


def said_on_the_card(job, sentence: str) -> None:
    """A spot check's outcome ("spot check: ...") as a fact of the job: its card shows it, its log keeps the line."""
    job.fact("spot check", sentence.removeprefix("spot check: "))


def nothing_to_queue(evaluation: dict, by: str) -> str | None:
    """What the job's log says when spot-check pairs were asked for and none qualified (None: there was no
    evaluation with examples to pick from, which the log says elsewhere).

    >>> nothing_to_queue({"val/win_pairs": 16, "examples": [{}]}, "the reward model")
    "spot check: no pair queued: the reward model preferred the new answer on none of the 16 held-out pairs (it prefers the start's answers), so there is nothing of its favourites for people to check"
    >>> nothing_to_queue({"val/win_pairs": 2, "val/win_rate": 0.5, "examples": [{}]}, "the reward model").split("none of the ")[1]
    "2 held-out pairs (it scores the new answers and the start's alike), so there is nothing of its favourites for people to check"
    """
    if not evaluation.get("examples"):
        return None
    ties = evaluation.get("val/win_rate") or 0  # no win, so the win rate is half the share of ties: 0.5, every pair
    why = ("it scores the new answers and the start's alike" if ties >= 0.5 else
           "it prefers the start's answers or scores them alike" if ties > 0 else "it prefers the start's answers")
    return (f"spot check: no pair queued: {by} preferred the new answer on none of the {evaluation.get('val/win_pairs', '?')} "
            f"held-out pairs ({why}), so there is nothing of its favourites for people to check")


def activate(db: Database, version_id: int, actor: User | None = None, by: str = "", override: str = "") -> None:
    """Make a version active (data/versions.py:set_active, `override` as there), unless people disagree with the
    reward model on the generator's favourite pairs: checked in the same transaction."""
    with write_transaction(db):
        version = versions.get_version(db, version_id)
        if version["kind"] == "generator" and (check := verdict(db, version_id)) and check["gamed"]:
            remedy = ("Use a judge that agrees with people more (Quality → Agreement measures it), or train a reward model"
                      if check["by"] == "the judge" else "Train the reward model")
            raise ValueError(f"{version['name']} is not made active: {check['sentence']}. {remedy} on more rankings "
                             "(the spot check's are among them) before the next policy update.")
        versions.set_active(db, version_id, actor=actor, by=by, override=override)


def verdict(db: Database, version_id: int) -> dict | None:
    """What people said about the reward model's favourites of this version (its final checkpoint's, when earlier
    checkpoints were spot-checked too); None when none were queued."""
    rows = checkpoint_agreement(db, version_id)
    if not rows:
        return None
    final = rows[-1]
    pairs, rankings, share = final["pairs"], final["rankings"], final["agreement"]
    name = set_name(final["version"])
    per_pair = db.execute("SELECT rankings_wanted FROM prompt_sets WHERE name = ?", [name]).fetchone()
    per_pair = per_pair[0] if per_pair else RANKINGS_PER_PAIR
    gamed = rankings >= MIN_RANKINGS and share < GAMED_BELOW
    return {"set": name, "pairs": pairs, "rankings": rankings, "wanted": pairs * per_pair,
            "agreement": share, "low": final["low"], "high": final["high"], "gamed": gamed, "by": final["by"],
            "sentence": _sentence(rankings, share, final["low"], final["high"], gamed, pairs, final["by"], per_pair)
                        + (f" (at the final checkpoint, step {final['step']}; the earlier ones are charted on Policy update)"
                           if len(rows) > 1 else "")}


def checkpoint_agreement(db: Database, version_id: int) -> list[dict]:
    """People's agreement with the reward (model or judge) on its favourite pairs, per checkpoint of the run that made
    this version, in step order (a version spot-checked only at its end: one row, step None). Each row: step, kl,
    pairs, rankings, agree (a tie counts half), agreement with its 95% interval, and the version's name and rewarder."""
    found = db.execute("""
        SELECT v.name, COALESCE(json_extract(v.config, '$.judge_remote'), '') != ''
                       OR json_extract(v.config, '$.judge_version') IS NOT NULL
        FROM model_versions v WHERE v.id = ?""", [version_id]).fetchone()
    if not found:
        return []
    name, judged = found
    rows = db.execute("""
        SELECT json_extract(n.params, '$.step') AS step, MAX(json_extract(n.params, '$.kl')),
               COUNT(DISTINCT i.id), COUNT(r.id), TOTAL(CASE
            WHEN r.id IS NULL THEN 0.0
            WHEN EXISTS (SELECT 1 FROM comparisons c WHERE c.ranking_id = r.id AND c.chosen_id = n.id) THEN 1.0
            WHEN EXISTS (SELECT 1 FROM comparisons c WHERE c.ranking_id = r.id) THEN 0.0
            ELSE 0.5 END)
        FROM prompts p JOIN items i ON i.prompt_id = p.id
        JOIN completions n ON n.item_id = i.id AND n.generator_version_id = ?
        LEFT JOIN rankings r ON r.item_id = i.id AND r.skipped = 0
        WHERE p.prompt_set = ?
        GROUP BY step ORDER BY step""", [version_id, set_name(name)]).fetchall()
    by = rewarder(bool(judged))
    return [{"step": step, "kl": kl, "pairs": pairs, "rankings": rankings, "agree": agree,
             "agreement": agree / rankings if rankings else None, **dict(zip(("low", "high"), wilson_interval(agree, rankings))),
             "version": name, "by": by} for step, kl, pairs, rankings, agree in rows]


def _sentence(rankings: int, share: float | None, low: float, high: float, gamed: bool, pairs: int, by: str,
              per_pair: int = RANKINGS_PER_PAIR) -> str:
    """`per_pair`: the rankings each pair wants (fewer than a verdict needs when too few people are served it)."""
    wanted = pairs * per_pair
    if wanted < MIN_RANKINGS:
        why = (f"only {per_pair} {'people are' if per_pair != 1 else 'person is'} served it, and each ranks a pair once: "
               "add annotators on Team, then raise the set's N on Overview" if per_pair < rankings_per_pair(pairs) else
               "the held-out prompts gave no more pairs where it prefers the new answer; hold out more prompts next time")
        return (f"{rankings} of {wanted} rankings of {by}'s {pairs} favourite pair{'s' if pairs != 1 else ''}: too few "
                f"for a verdict, which needs {MIN_RANKINGS} rankings ({why})")
    if rankings < MIN_RANKINGS:
        return f"{rankings} of {wanted} rankings of {by}'s favourite pairs so far (a verdict from {MIN_RANKINGS})"
    said = f"people agree with {by} on {share:.0%} of {rankings} rankings of its favourite pairs (95% interval {span(low, high)})"
    return f"{by} is being gamed: {said}" if gamed else said
