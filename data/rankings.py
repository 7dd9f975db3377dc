"""Rankings with ties, as pure functions.

A ranking is a list of groups, best first; completions in one group are tied.
Completions are named by their position in the item (0 = A, 1 = B, ...), so
`[[3], [2], [0, 1]]` reads D > C > A = B.
"""

import re
from dataclasses import dataclass

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


def validate_ranking(groups: list[list[int]], k: int) -> list[list[int]]:
    """Check that `groups` ranks each of the k completions exactly once.

    Returns the groups with each group sorted, ready to store.
    """
    if not MIN_K <= k <= MAX_K:
        raise RankingError(f"need between {MIN_K} and {MAX_K} completions to rank, got {k}")
    seen = [p for group in groups for p in group]
    if any(not group for group in groups):
        raise RankingError("a ranking cannot contain an empty group")
    out_of_range = sorted({p for p in seen if not 0 <= p < k})
    if out_of_range:
        raise RankingError(f"positions {out_of_range} do not exist: this item has {k} completions")
    duplicated = sorted({LETTERS[p] for p in seen if seen.count(p) > 1})
    if duplicated:
        raise RankingError(f"{', '.join(duplicated)} ranked more than once")
    missing = [LETTERS[p] for p in range(k) if p not in seen]
    if missing:
        raise RankingError(f"give every completion a rank: {', '.join(missing)} has none")
    return [sorted(group) for group in groups]


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
    so the annotator types the letters they saw.

    >>> parse_ranking_text("d > c > a = b", [0, 1, 2, 3])
    [[3], [2], [0, 1]]
    >>> parse_ranking_text("DCA=B", [0, 1, 2, 3])
    [[3], [2], [0, 1]]
    """
    cleaned = re.sub(r"\s*=\s*", "=", text.strip().upper())
    unknown = sorted(set(re.sub(r"[A-I=>,\s]", "", cleaned)))
    if unknown:
        raise RankingError(f"cannot read {''.join(unknown)!r}: use letters, '>' or spaces between ranks and '=' for ties")
    groups = []
    for token in re.split(r"[>,\s]+", cleaned):
        if not token:
            continue
        # Letters written together without '=' are separate ranks ("DC" is D > C).
        for chunk in re.findall(r"[A-I](?:=[A-I])*", token):
            groups.append([_position(letter, letters_to_positions) for letter in chunk.split("=")])
    if not groups:
        raise RankingError("type a ranking, best first, e.g. D > C > A = B")
    return groups


def _position(letter: str, letters_to_positions: list[int]) -> int:
    index = LETTERS.index(letter)
    if index >= len(letters_to_positions):
        raise RankingError(f"there is no completion {letter}: this item has {len(letters_to_positions)}")
    return letters_to_positions[index]


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
            raise RankingError(f"give every completion a rank: {', '.join(missing)} has none")
        shown_groups = ranks_to_groups(dict(enumerate(ranks)))
    shown_groups = validate_ranking(shown_groups, k)
    return [sorted(shown_order[i] for i in group) for group in shown_groups]


def shown_text(groups: list[list[int]], shown_order: list[int]) -> str:
    """A stored ranking written with the letters the annotator saw.

    >>> shown_text([[1], [0]], [1, 0])
    'A > B'
    """
    return groups_to_text([sorted(shown_order.index(p) for p in group) for group in groups])
