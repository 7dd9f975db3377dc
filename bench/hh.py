"""The shared HH-RLHF comparisons (../shared/data/hh-rlhf), split as shared/data/README.md says."""

import gzip
import json
import random
from dataclasses import dataclass

from bench.common import SHARED

HH_FILE = SHARED / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
ASSISTANT = "\n\nAssistant:"


@dataclass
class HumanPair:
    index: int
    prompt: str  # the dialogue up to and including the last "Assistant:"
    chosen: str  # the last assistant turn the annotator preferred
    rejected: str


def split_dialogue(index: int, chosen: str, rejected: str) -> HumanPair | None:
    cut = chosen.rfind(ASSISTANT) + len(ASSISTANT)
    prompt = chosen[:cut]
    if cut < len(ASSISTANT) or not rejected.startswith(prompt):
        return None
    return HumanPair(index, prompt, chosen[cut:], rejected[cut:])


def load_split() -> tuple[list[HumanPair], list[HumanPair]]:
    """(train, held_out): indices shuffled with random.Random(0); first 1,850 train, last 462 held out."""
    if not HH_FILE.exists():
        raise FileNotFoundError(f"{HH_FILE} is missing: the benchmarks read ../shared beside the checkout")
    with gzip.open(HH_FILE, "rt") as f:
        rows = [json.loads(line) for line in f]
    idx = list(range(len(rows)))
    random.Random(0).shuffle(idx)
    pairs = [split_dialogue(i, rows[i]["chosen"], rows[i]["rejected"]) for i in range(len(rows))]
    train = [pairs[i] for i in idx[:1850] if pairs[i]]
    held_out = [pairs[i] for i in idx[1850:] if pairs[i]]
    return train, held_out
