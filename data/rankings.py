"""Rankings with ties, as pure functions.

A ranking is a list of groups, best first; completions in one group are tied.
Completions are named by their position in the item (0 = A, 1 = B, ...), so
`[[3], [2], [0, 1]]` reads D > C > A = B.
"""

import collections
import datetime
import json
import math
import numbers
import re
from dataclasses import dataclass

FLAGS = ("all are bad", "offensive/unsafe", "prompt unclear")  # what an annotator may flag a ranking with

MIN_K, MAX_K = 2, 9
LETTERS = "ABCDEFGHI"


class RankingError(ValueError):
    """A ranking that cannot be stored; the message says what to fix."""


@dataclass(frozen=True)
class Pair:
    chosen: int
    rejected: int
    margin: int  # how many groups apart: 1 for neighbours


def ranking_to_pairs(groups: list[list[int]]) -> list[Pair]:
    """Every (better, worse) pair a ranking implies; ties give no pair.

    >>> [(p.chosen, p.rejected, p.margin) for p in ranking_to_pairs([[3], [2], [0, 1]])]
    [(3, 2, 1), (3, 0, 2), (3, 1, 2), (2, 0, 1), (2, 1, 1)]
    >>> ranking_to_pairs([[0, 1, 2]])
    []
    """
    pairs = []
    for i, better in enumerate(groups):
        for chosen in better:
            for j in range(i + 1, len(groups)):
                for rejected in groups[j]:
                    pairs.append(Pair(chosen, rejected, j - i))
    return pairs


def tied_pairs(groups: list[list[int]]) -> list[tuple[int, int]]:
    """Every pair a ranking ties (what ranking_to_pairs leaves out).

    >>> tied_pairs([[3], [2], [0, 1]]), tied_pairs([[0, 1, 2]])
    ([(0, 1)], [(0, 1), (0, 2), (1, 2)])
    """
    return [(a, b) for group in groups for i, a in enumerate(group) for b in group[i + 1:]]


def passes_gold(expected: list[list[int]], groups: list[list[int]]) -> bool:
    """Whether a ranking orders every pair the gold answer `expected` orders the same way (a tie fails).

    >>> passes_gold([[2], [0]], [[2], [1], [0]]), passes_gold([[2], [0]], [[0, 2], [1]])
    (True, False)
    """
    rank = {p: g for g, group in enumerate(groups) for p in group}
    return all(rank[p.chosen] < rank[p.rejected] for p in ranking_to_pairs(expected))


def is_int(value) -> bool:
    """A whole number as JSON gives it: True and 0.0 are not positions.

    >>> [is_int(v) for v in (3, True, 0.0, "1")]
    [True, False, False, False]
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def have_none(letters: list[str]) -> str:
    """The letters without a rank, in words.

    >>> have_none(["C"]), have_none(["A", "B", "C"])
    ('C has none', 'A, B and C have none')
    """
    if len(letters) == 1:
        return f"{letters[0]} has none"
    return f"{', '.join(letters[:-1])} and {letters[-1]} have none"


def validate_ranking(groups: list[list[int]], k: int) -> list[list[int]]:
    """Check that `groups` ranks each of the k completions exactly once.

    Returns the groups with each group sorted, ready to store.
    """
    if not MIN_K <= k <= MAX_K:
        raise RankingError(f"need between {MIN_K} and {MAX_K} completions to rank, got {k}")
    if not isinstance(groups, list) or not all(isinstance(g, list) and all(is_int(p) for p in g) for g in groups):
        raise RankingError("a ranking is a list of groups of completion positions (whole numbers), best first, "
                           "e.g. [[3], [2], [0, 1]]")
    seen = [p for group in groups for p in group]
    if any(not group for group in groups):
        raise RankingError("a ranking cannot contain an empty group")
    out_of_range = sorted({p for p in seen if not 0 <= p < k})
    if out_of_range:
        raise RankingError(f"positions {out_of_range} do not exist: this item has {k} completions")
    duplicated = sorted(LETTERS[p] for p, n in collections.Counter(seen).items() if n > 1)
    if duplicated:
        raise RankingError(f"{', '.join(duplicated)} ranked more than once")
    missing = [LETTERS[p] for p in sorted(set(range(k)) - set(seen))]
    if missing:
        raise RankingError(f"give every completion a rank: {have_none(missing)}")
    return [sorted(int(p) for p in group) for group in groups]


def validate_order(order: list[int], k: int) -> list[int]:
    """Check that a display order shows each of the k positions once.

    >>> validate_order([2, 0, 1], 3)
    [2, 0, 1]
    """
    if not isinstance(order, list) or not all(is_int(p) for p in order) or sorted(order) != list(range(k)):
        raise RankingError(f"a display order lists each position 0 to {k - 1} once, e.g. {list(range(k))}")
    return [int(p) for p in order]


def ranks_to_groups(ranks: dict[int, int]) -> list[list[int]]:
    """Rank numbers per position (1 = best, equal numbers tie) to groups, best first.

    >>> ranks_to_groups({0: 3, 1: 3, 2: 2, 3: 1})
    [[3], [2], [0, 1]]
    """
    by_rank: dict[int, list[int]] = {}
    for position, rank in ranks.items():
        by_rank.setdefault(rank, []).append(position)
    return [sorted(by_rank[rank]) for rank in sorted(by_rank)]


def parse_ranking_text(text: str, letters_to_positions: list[int]) -> list[list[int]]:
    """Parse a typed ranking such as "D > C > A = B", "D C A=B" or "DCA=B".

    `letters_to_positions[i]` is the position of the completion shown as letter i,
    so the annotator types the letters they saw. Anything ambiguous ("A==B", "A=>B", "A>>B") is refused.

    >>> parse_ranking_text("d > c > a = b", [0, 1, 2, 3])
    [[3], [2], [0, 1]]
    >>> parse_ranking_text("DCA=B", [0, 1, 2, 3])
    [[3], [2], [0, 1]]
    """
    cleaned = text.strip().upper()
    unknown = list(dict.fromkeys(re.sub(r"[A-Ia-i=>,\s]", "", text.strip())))  # as typed, in the order typed
    if unknown:
        raise RankingError(f"cannot read {', '.join(map(repr, unknown))}: use the letters {letter_range(len(letters_to_positions))}, "
                           "'>' or spaces between ranks and '=' for ties")
    if not cleaned:
        raise RankingError("type a ranking, best first, e.g. D > C > A = B")
    # One separator between ranks: '>', ',' or spaces; '=' only ever joins two letters.
    compact = re.sub(r"\s+", ">", re.sub(r"\s*([=>,])\s*", r"\1", cleaned)).replace(",", ">")
    if re.search(r"(?<![A-I])=|=(?![A-I])", compact):
        raise RankingError(f"cannot read {text.strip()!r}: '=' ties two letters, as in A = B (one '=', a letter on each side)")
    if re.search(r"(?<![A-I])>|>(?![A-I])", compact):
        raise RankingError(f"cannot read {text.strip()!r}: put one '>' (or a space) between two ranks, as in D > C > A = B")
    # Letters written together without '=' are separate ranks ("DC" is D > C).
    return [[_position(letter, letters_to_positions) for letter in chunk.split("=")]
            for rank in compact.split(">") for chunk in re.findall(r"[A-I](?:=[A-I])*", rank)]


def _position(letter: str, letters_to_positions: list[int]) -> int:
    index = LETTERS.index(letter)
    if index >= len(letters_to_positions):
        raise RankingError(f"there is no completion {letter}: this item has {len(letters_to_positions)}, "
                           f"{letter_range(len(letters_to_positions))}")
    return letters_to_positions[index]


def example_ranking(k: int) -> str:
    """A ranking of k letters to show as an example: best first, the first two tied.

    >>> example_ranking(4), example_ranking(3), example_ranking(2)
    ('D > C > A = B', 'C > A = B', 'B > A')
    """
    return "B > A" if k == 2 else " > ".join(reversed(LETTERS[2:k])) + " > A = B"


def letter_range(k: int) -> str:
    """
    >>> letter_range(4), letter_range(2)
    ('A-D', 'A and B')
    """
    return f"{LETTERS[0]} and {LETTERS[1]}" if k == 2 else f"{LETTERS[0]}-{LETTERS[k - 1]}"


def groups_to_text(groups: list[list[int]]) -> str:
    """The ranking as an annotator would write it.

    >>> groups_to_text([[3], [2], [0, 1]])
    'D > C > A = B'
    """
    return " > ".join(" = ".join(LETTERS[p] for p in group) for group in groups)


def tie_count(groups: list[list[int]]) -> int:
    """Number of tied pairs in a ranking: a group of n contributes n(n-1)/2.

    >>> tie_count([[3], [2], [0, 1]])
    1
    """
    return sum(len(g) * (len(g) - 1) // 2 for g in groups)


def ranking_from_input(typed: str, ranks: list[int | None], shown_order: list[int]) -> list[list[int]]:
    """The ranking to store (positions) from what an annotator entered about the letters they saw.

    `typed` ("D > C > A = B") wins when given; otherwise `ranks[i]` is the rank number given
    to the i-th shown completion (1 = best, equal numbers tie). Errors name the shown letters.

    >>> ranking_from_input("", [3, 3, 2, 1], [0, 1, 2, 3])
    [[3], [2], [0, 1]]
    >>> ranking_from_input("A > B", [None, None], [1, 0])
    [[1], [0]]
    """
    k = len(shown_order)
    if typed.strip():
        shown_groups = parse_ranking_text(typed, list(range(k)))
    else:
        missing = [LETTERS[i] for i, rank in enumerate(ranks) if rank is None]
        if missing:
            raise RankingError(f"give every completion a rank: {have_none(missing)}"
                               + (" (or, to flag all of them bad or unsafe, tick the flag and Submit with no rank)"
                                  if len(missing) == k else ""))
        shown_groups = ranks_to_groups(dict(enumerate(ranks)))
    shown_groups = validate_ranking(shown_groups, k)
    return [sorted(shown_order[i] for i in group) for group in shown_groups]


def shown_text(groups: list[list[int]], shown_order: list[int]) -> str:
    """A stored ranking written with the letters the annotator saw.

    >>> shown_text([[1], [0]], [1, 0])
    'A > B'
    """
    return groups_to_text([sorted(shown_order.index(p) for p in group) for group in groups])


def answer_text(row: dict, order: list[int] | None = None) -> str:
    """An annotator's answer (a stored ranking row: skipped, flags, groups, display_order) as they gave it: the ranking
    in the letters they saw (or in `order`), else why there is none (a flag sent without a ranking is not a plain skip).

    >>> answer_text({"skipped": 0, "flags": [], "groups": [[1], [0]], "display_order": [1, 0]})
    'A > B'
    >>> answer_text({"skipped": 1, "flags": ["all are bad"], "groups": None, "display_order": [0, 1]})
    'no ranking, flagged all are bad'
    """
    if not row["skipped"]:
        return shown_text(row["groups"], row["display_order"] if order is None else order)
    return f"no ranking, flagged {', '.join(row['flags'])}" if row["flags"] else "skipped"


MAX_SECONDS = 10**9  # about 32 years: more is no time anybody spent, and a bigger integer would not fit SQLite


def seconds_ok(value) -> bool:
    """Time spent on a ranking: a finite number of seconds, 0 or more, under MAX_SECONDS.

    >>> [seconds_ok(v) for v in (4.5, 0, -1, float("nan"), "slow", True, 18446744073709551616)]
    [True, True, False, False, False, False, False]
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value < MAX_SECONDS


def utc_timestamp(value) -> str | None:
    """An ISO 8601 time written as `created_at` columns are (UTC, milliseconds; no zone means UTC), or None.

    >>> utc_timestamp("2024-05-01T12:00:00+02:00")
    '2024-05-01T10:00:00.000+00:00'
    """
    try:
        moment = datetime.datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")
    except (TypeError, ValueError, OverflowError):
        return None


def repaired_ranking(row: dict, k: int, known_flags: tuple, fallback_time: str) -> dict:
    """The columns of a stored `rankings` row to rewrite so that every screen can read it; {} when it is sound.

    Bad seconds become None, a bad display order the identity, bad flags [], a bad created_at `fallback_time`.
    Groups that are no ranking of the k completions, even once whole-number floats are ints, make the row a skip.
    """
    fixed = {
        "seconds": row["seconds"] if row["seconds"] is None or seconds_ok(row["seconds"]) else None,
        "display_order": _stored(row["display_order"], lambda order: validate_order(order, k), list(range(k))),
        "flags": _stored(row["flags"], lambda flags: _known_flags(flags, known_flags), []),
        "groups": None if row["skipped"] else _stored(row["groups"], lambda g: validate_ranking(_whole_numbers(g), k), None),
        "created_at": utc_timestamp(row["created_at"]) or fallback_time,
    }
    fixed["skipped"] = int(bool(row["skipped"]) or fixed["groups"] is None)
    return {column: value for column, value in fixed.items() if value != row[column]}


def _stored(text, check, default) -> str | None:
    """The JSON of check(json.loads(text)), or of `default` when the text does not pass."""
    try:
        value = check(json.loads(text))
    except (TypeError, ValueError, RecursionError):
        value = default
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _known_flags(flags, known: tuple) -> list[str]:
    if not isinstance(flags, list) or not all(isinstance(f, str) and f in known for f in flags):
        raise ValueError(f"flags must be a list of {list(known)}")
    return flags


def _whole_numbers(groups):
    """Positions stored as whole-number floats (1.0) by older importers, as ints."""
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        return groups
    return [[int(p) if isinstance(p, float) and p.is_integer() else p for p in g] for g in groups]
