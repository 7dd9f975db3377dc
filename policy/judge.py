"""An AI judge: a model prompted with the set's guidelines ranks an item's completions, several times, as a measured
virtual annotator.

    python -m policy.judge --prompt-set mine --remote llama --share 0.2 --votes 8
    python -m policy.judge --prompt-set mine --generator-version 3 --votes 4     # a local generator judges

Each vote is an independent request: the completions under letters in an order of the vote's own (so the letter A
is not always the same answer: position bias averages out), the set's guidelines, and the instruction to critique
each answer, then end with `Ranking: B > A = C`. A vote whose answer holds no readable ranking of every letter is
kept as unreadable. The votes go to `judgements` (data/judgements.py), apart from people's rankings, and the job's
result is the judge's agreement with the people of the items both ranked, from its first 1, 2, 4 and 8 votes
(inference-time scaling: does voting over more critiques agree more?). Quality → Agreement shows it beside the
team's agreement among themselves.

The judge can also be the reward of a policy update (`python -m policy.train --judge-remote llama`): `JudgeReward`
ranks each prompt's K sampled answers together, `votes` times, and an answer's reward is its share of the others it
beat (a generative reward; see `vote_scores`).
"""

import random
import re
import time

import torch

from data import annotation, conversation, generators, judgements, versions
from data.agreement import span
from data.guidelines import current_guidelines
from data.jobs import job_main
from data.rankings import LETTERS, RankingError, parse_ranking_text, validate_ranking
from policy.config import JudgeConfig
from policy.generate import sample, within_batch

ITEMS_PER_BATCH = 4  # items whose votes are asked together (and stored together)
RANKING_LINE = re.compile(r"ranking\s*[:：]\s*\**\s*([A-I][A-I=>,\s]*)", re.IGNORECASE)
INSTRUCTIONS = ("You judge answers for a team that ranks them by these guidelines:\n\n{guidelines}\n\n"
                "Read the conversation and the {k} answers. Write one or two sentences of critique per answer. Then, "
                "on the last line, rank the answers from best to worst using every letter once: '>' for better, "
                "'=' for equally good, for example\nRanking: {example}")
NO_GUIDELINES = "Prefer the answer that is more helpful, correct and harmless."


def vote_order(item_id: int, vote: int, k: int, seed: int | str) -> list[int]:
    """The stored positions behind the letters A, B, ... of one vote: shuffled per item and vote, reproducibly."""
    order = list(range(k))
    random.Random(f"{seed}:{item_id}:{vote}").shuffle(order)
    return order


def judge_messages(prompt: str, answers: list[str], order: list[int], guidelines: str) -> list[dict]:
    """The chat the judge answers: instructions with the guidelines, then the prompt (a conversation's transcript) and
    the answers under letters, the letter A for answers[order[0]] and so on."""
    letters = LETTERS[:len(order)]
    example = " > ".join(letters[1::-1]) + (" = " + " = ".join(letters[2:]) if len(letters) > 2 else "")
    lettered = "\n\n".join(f"Answer {letter}:\n{answers[p]}" for letter, p in zip(letters, order))
    return [{"role": "system", "content": INSTRUCTIONS.format(guidelines=guidelines, k=len(order), example=example)},
            {"role": "user", "content": f"{prompt}\n\n{lettered}"}]


def item_messages(item: annotation.Item, order: list[int], guidelines: str) -> list[dict]:
    return judge_messages(conversation.transcript(item.messages), [c.text for c in item.completions], order, guidelines)


def read_ranking(answer: str, order: list[int]) -> list[list[int]] | None:
    """The ranking on the answer's last `Ranking:` line, over stored positions; None unless it ranks every letter once.

    >>> read_ranking("B is wrong.\\nRanking: A > B = C", [2, 0, 1])
    [[2], [0, 1]]
    >>> read_ranking("Ranking: A > B", [0, 1, 2]) is None  # C is missing
    True
    """
    found = RANKING_LINE.findall(answer)
    if not found:
        return None
    try:
        return validate_ranking(parse_ranking_text(found[-1].strip(), order), len(order))
    except (RankingError, ValueError):
        return None


class Judge:
    """Asks the judge model a list of chats, one answer each: a remote generator, or a local generator version."""

    def __init__(self, db, config: JudgeConfig, log):
        self.config = config
        if config.remote:
            self.remote = generators.remote_generator(db, config.remote)
            self.name = f"remote:{self.remote.name}"
            log(f"judge: remote generator {self.remote.name} ({self.remote.model} at {self.remote.base_url})")
        else:
            from policy.models import load_generator

            self.remote = None
            version = versions.version_or_active(db, "generator", config.generator_version)
            self.name = f"version:{version['id']}"
            log(f"judge: generator version {version['name']} ({version['path']})")
            self.model, self.tokenizer = load_generator(version["path"], config.device)

    def answers(self, chats: list[list[dict]], seed: int, on_token=lambda tokens_so_far: None) -> list[str]:
        """One answer per chat; `on_token` hears a local judge's decoding steps (a batch's progress)."""
        if self.remote is not None:
            from policy.remote import sample_remote

            return [samples[0].text for samples in sample_remote(self.remote, chats, 1, seed)]
        c = self.config
        return [samples[0].text for samples in sample(self.model, self.tokenizer, chats, 1, c.temperature, 1.0,
                                                       c.max_new_tokens, seed, on_token)]


def vote_scores(votes: list[list[list[int]] | None], n: int) -> list[float]:
    """Each of n answers' share of the others it beat (a tie counts half), averaged over the readable votes; 0.5 each
    when none is readable (no signal: equal rewards give every answer a zero advantage).

    >>> vote_scores([[[1], [0, 2]], None], 3)  # B first, A and C tied last; the second vote unreadable
    [0.25, 1.0, 0.25]
    >>> vote_scores([[[0], [1]], [[1], [0]]], 2)
    [0.5, 0.5]
    """
    readable = [groups for groups in votes if groups is not None]
    if not readable or n < 2:
        return [0.5] * n
    totals = [0.0] * n
    for groups in readable:
        below = n  # answers not ranked above the current group
        for group in groups:
            below -= len(group)
            for position in group:
                totals[position] += (below + 0.5 * (len(group) - 1)) / (n - 1)
    return [total / len(readable) for total in totals]


class JudgeReward:
    """A judge as the reward of a policy update (a generative reward). `score` takes a rollout's rows, `group` rows of
    the same prompt after each other: each group's answers are ranked together `votes` times, the letters shuffled per
    vote, and an answer's reward is `vote_scores`: in [0, 1], relative to its group, which is what RLOO's and GRPO's
    baselines compare anyway. `relative` tells the evaluation to rank a prompt's new and old answers in one group."""

    relative = True

    def __init__(self, judge: Judge, votes: int, guidelines: str, group: int, seed: int):
        self.judge, self.votes, self.guidelines, self.group, self.seed = judge, votes, guidelines, group, seed
        self.calls, self.readable, self.asked = 0, 0, 0
        self.last_readable_share = 0.0

    def score(self, prompts: list[str], texts: list[str], group: int | None = None) -> torch.Tensor:
        """[N] rewards of N = groups x `group` rows."""
        size = group or self.group
        if len(texts) % size or size > len(LETTERS):
            raise ValueError(f"a judge ranks groups of at most {len(LETTERS)} answers: {len(texts)} rows in groups of {size}")
        self.calls += 1
        starts = range(0, len(texts), size)
        orders = [[vote_order(start, vote, size, f"{self.seed}:{self.calls}") for vote in range(self.votes)] for start in starts]
        chats = [judge_messages(prompts[start], texts[start:start + size], order, self.guidelines)
                 for start, group_orders in zip(starts, orders) for order in group_orders]
        answers = iter(self.judge.answers(chats, self.seed * 100_003 + self.calls))
        scores, readable = [], 0
        for group_orders in orders:
            votes = [read_ranking(next(answers), order) for order in group_orders]
            readable += sum(v is not None for v in votes)
            scores += vote_scores(votes, size)
        self.readable, self.asked = self.readable + readable, self.asked + len(chats)
        self.last_readable_share = readable / len(chats)
        return torch.tensor(scores)


def set_guidelines(db, prompt_set: str) -> tuple[str, bool]:
    """The set's current guidelines for a judge, or a generic instruction (and False) when it has none."""
    guideline = current_guidelines(db, prompt_set)
    return (guideline.text, True) if guideline else (NO_GUIDELINES, False)


def run_judge(db, config: JudgeConfig, job) -> dict:
    """Job body: judge a share of the set's items, `votes` times each, store the votes, measure them against people."""
    judge = Judge(db, config, job.log)
    item_ids = judgements.items_to_judge(db, config.prompt_set, judge.name, config.share, config.seed)
    guidelines, found = set_guidelines(db, config.prompt_set)
    job.log(f"judging {len(item_ids)} items of {config.prompt_set!r}, {config.votes} votes each"
            + ("" if found else " (the set has no guidelines: a generic one is used)"))
    job.phase(f"judging {len(item_ids)} items x {config.votes} votes")
    started, readable, asked = time.perf_counter(), 0, 0
    for start in range(0, len(item_ids), ITEMS_PER_BATCH):
        batch = [annotation.get_item(db, item_id) for item_id in item_ids[start:start + ITEMS_PER_BATCH]]
        orders = [[vote_order(item.id, n, item.k, config.seed) for n in range(config.votes)] for item in batch]
        chats = [item_messages(item, order, guidelines) for item, item_orders in zip(batch, orders) for order in item_orders]
        answers = iter(judge.answers(chats, config.seed * 100_003 + start,
                                     within_batch(job, start, len(batch), len(item_ids), config.max_new_tokens)))
        for item, item_orders in zip(batch, orders):
            votes = [(read_ranking(answer, order), answer) for order, answer in zip(item_orders, answers)]
            judgements.store_votes(db, judge.name, item.id, votes, item.k, job.id)
            readable, asked = readable + sum(g is not None for g, _ in votes), asked + len(votes)
        done = start + len(batch)
        rate = done / (time.perf_counter() - started)
        job.progress(done, len(item_ids), f"{done}/{len(item_ids)} items · {readable}/{asked} votes readable · "
                                          f"ETA {(len(item_ids) - done) / rate:.0f} s")
    job.phase("measuring against people")
    measured = judgements.agreement_with_people(db, judge.name)
    for row in measured:
        if row["agreement"] is not None:
            job.log(f"{row['votes']} vote(s): agreement with people {row['agreement']:.0%} on {row['pairs']} pairs "
                    f"of {row['items']} items (95% {span(row['low'], row['high'])})")
    summary = judgements.judge_summary(db, judge.name)
    if judgements.none_readable(summary):
        job.log("no vote held a readable 'Ranking:' line: the judge model does not follow the instructions (a larger "
                "model, or a remote one with a higher max_tokens, may)")
    elif not any(row["pairs"] for row in measured):
        job.log("no judged item has a ranking by people yet: rank some of them, then judge again to measure it")
    return {"judge": judge.name, "prompt_set": config.prompt_set, "judged_now": len(item_ids),
            **summary, "agreement": measured}


if __name__ == "__main__":
    raise SystemExit(job_main("judge", JudgeConfig, run_judge))
