"""Pure helpers for comparing completions on the annotate screen: layout, long answers, a word diff."""

import difflib
import html
import re

HEAD_WORDS = 220  # a completion longer than this shows its head; the tail is one click away


def word_count(text: str) -> int:
    """
    >>> word_count("Two  words\\n")
    2
    """
    return len(text.split())


def grid_rows(k: int, side_by_side: bool) -> list[list[int]]:
    """Which shown completions share a row: K <= 3 in one row, K = 4 as 2 x 2, more in rows of 3; stacked: one per row.

    >>> grid_rows(4, True), grid_rows(3, True), grid_rows(5, True), grid_rows(2, False)
    ([[0, 1], [2, 3]], [[0, 1, 2]], [[0, 1, 2], [3, 4]], [[0], [1]])
    """
    per_row = (2 if k == 4 else 3) if side_by_side else 1
    return [list(range(start, min(start + per_row, k))) for start in range(0, k, per_row)]


def split_long(text: str, head_words: int = HEAD_WORDS) -> tuple[str, str]:
    """(head, tail): whole paragraphs up to about `head_words`, the rest as the tail ("" when the text is short).

    The cut falls between paragraphs and never inside a ``` code block, so each half renders as Markdown.

    >>> split_long("one two\\n\\nthree four\\n\\nfive", head_words=3)
    ('one two\\n\\nthree four', 'five')
    >>> split_long("short", head_words=3)
    ('short', '')
    """
    if word_count(text) <= head_words * 1.25:  # a tail of a few words is not worth a click
        return text, ""
    paragraphs = re.split(r"\n\s*\n", text)
    words, fences = 0, 0
    for n, paragraph in enumerate(paragraphs[:-1], start=1):
        words += word_count(paragraph)
        fences += paragraph.count("```")
        if words >= head_words and fences % 2 == 0:
            return "\n\n".join(paragraphs[:n]), "\n\n".join(paragraphs[n:])
    return text, ""  # one long paragraph (or one code block): shown whole


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """The word-level edit from `a` to `b` as (op, text) runs; op is "same", "removed" or "added".

    Words and the whitespace between them are separate tokens, so the runs joined give back each text.

    >>> word_diff("the cat sat", "the dog sat")
    [('same', 'the '), ('removed', 'cat'), ('added', 'dog'), ('same', ' sat')]
    """
    a_words, b_words = re.findall(r"\S+|\s+", a), re.findall(r"\S+|\s+", b)
    runs = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a_words, b_words, autojunk=False).get_opcodes():
        if op == "equal":
            runs.append(("same", "".join(a_words[i1:i2])))
            continue
        if i2 > i1:
            runs.append(("removed", "".join(a_words[i1:i2])))
        if j2 > j1:
            runs.append(("added", "".join(b_words[j1:j2])))
    return runs


def similarity(a: str, b: str) -> float:
    """Share of words the two texts have in common, in order (difflib's ratio over words)."""
    return difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False).ratio()


def most_similar_pair(texts: list[str]) -> tuple[int, int]:
    """The two texts with the most words in common: where a diff helps most.

    >>> most_similar_pair(["a cat", "the dog barks", "the dog barked"])
    (1, 2)
    """
    pairs = [(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))]
    return max(pairs, key=lambda pair: similarity(texts[pair[0]], texts[pair[1]]))


_STYLE = {
    "same": "{}",
    "removed": '<del style="background:#fbd5d5;text-decoration:line-through">{}</del>',
    "added": '<ins style="background:#cdeccd;text-decoration:none">{}</ins>',
}


def diff_html(a: str, b: str) -> str:
    """The word diff as inert HTML: every text escaped, removals struck through, additions highlighted."""
    body = "".join(_STYLE[op].format(html.escape(text)) for op, text in word_diff(a, b))
    return f'<div style="white-space:pre-wrap;line-height:1.6">{body}</div>'
