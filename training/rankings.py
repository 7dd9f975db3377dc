"""Rankings as the trainers read them (the reward model and DPO), split by prompt: one home for both."""

import random
from dataclasses import dataclass

from sqlite_utils import Database

from data.review import EXCLUDED_FROM_TRAINING
from data.rankings import ranking_to_pairs
from data.reliability import training_weights
from data.store import from_json


@dataclass
class RankingExample:
    prompt_id: int
    prompt: str  # the prompt as text (a conversation's transcript)
    completions: list[str]
    groups: list[list[int]]  # positions into completions, best first, ties share a group
    messages: list[dict] | None = None  # a conversation's messages before the answer; None for a plain prompt
    annotator: str | None = None  # who ranked it
    weight: float = 1.0  # how much its loss counts (data/reliability.py with --weighting reliability; else 1)


def load_rankings(db: Database, prompt_sets: list[str] | None = None, annotators: list[str] | None = None,
                  keep_excluded: bool = False) -> list[RankingExample]:
    """Every submitted ranking (skips excluded), optionally only some prompt sets or annotators. Rejected rankings and
    those flagged "all are bad" or "offensive/unsafe" are left out unless `keep_excluded` (data.review)."""
    clauses, params = ["r.skipped = 0"] + ([] if keep_excluded else [f"NOT {EXCLUDED_FROM_TRAINING}"]), []
    for column, values in (("p.prompt_set", prompt_sets), ("a.name", annotators)):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += values
    rows = db.execute(
        f"""SELECT p.id, p.text, p.messages, r.item_id, r.groups, a.name FROM rankings r
            JOIN annotators a ON a.id = r.annotator_id JOIN items i ON i.id = r.item_id JOIN prompts p ON p.id = i.prompt_id
            WHERE {' AND '.join(clauses)} ORDER BY r.id""", params).fetchall()
    texts: dict[int, list[str]] = {}
    for item_id, text in db.execute("SELECT item_id, text FROM completions ORDER BY item_id, position"):
        texts.setdefault(item_id, []).append(text)
    return [RankingExample(prompt_id, prompt, texts[item_id], from_json(groups), from_json(messages) if messages else None,
                           annotator) for prompt_id, prompt, messages, item_id, groups, annotator in rows]


def weighted_by_reliability(db: Database, examples: list[RankingExample]) -> list[RankingExample]:
    """Each ranking weighted by its annotator's reliability (data/reliability.py); an annotator without figures: 1."""
    weights = training_weights(db)
    for example in examples:
        example.weight = weights.get(example.annotator, 1.0)
    return examples


def weights_line(examples: list[RankingExample]) -> str:
    """One log line: how the weights fell over the rankings, and whose rankings count for little."""
    weights: dict[str, float] = {}
    for example in examples:
        weights[example.annotator] = example.weight
    low = sorted(f"{name} {weight:.2f}" for name, weight in weights.items() if weight < 0.5)
    mean = sum(e.weight for e in examples) / max(1, len(examples))
    return (f"weighted by reliability: {len(weights)} annotators, mean weight per ranking {mean:.2f}; "
            + (f"counting for less than half: {', '.join(low)}" if low else "none counts for less than half"))


def held_out_count(prompts: int, validation_fraction: float) -> int:
    """How many of `prompts` prompts `split_by_prompt` holds out."""
    return max(1, round(prompts * validation_fraction))


def split_by_prompt(examples: list, validation_fraction: float, seed: int, prompt_of=lambda e: e.prompt_id):
    """(train, validation): every example of a prompt lands on the same side."""
    prompt_ids = sorted({prompt_of(e) for e in examples})
    random.Random(seed).shuffle(prompt_ids)
    held_out = set(prompt_ids[:held_out_count(len(prompt_ids), validation_fraction)])
    return [e for e in examples if prompt_of(e) not in held_out], [e for e in examples if prompt_of(e) in held_out]


def n_pairs(examples: list[RankingExample]) -> int:
    return sum(len(ranking_to_pairs(e.groups)) for e in examples)
