"""Pure helpers for comparing completions on the annotate screen: layout, long answers, a word diff."""

import functools
import html
import re
from collections import Counter

from diff_match_patch import diff_match_patch

HEAD_WORDS = 220  # a completion longer than this shows its head; the tail is one click away
# difflib took 98 s of the server's CPU on two 10,000-word answers (21 s on 1,000 repetitive words: worse than
# quadratic). diff-match-patch (Myers' diff) stops refining at a deadline and returns a correct, if less minimal, diff;
# words are diffed as characters, one per distinct word. Past DIFF_WORDS words the rest is shown, not compared.
DIFF_SECONDS = 0.5
OPS = {0: "same", -1: "removed", 1: "added"}
DIFF_WORDS = 5000


def word_count(text: str) -> int:
    """
    >>> word_count("Two  words\\n")
    2
    """
    return len(text.split())


def words_text(text: str, more: str = "") -> str:
    """
    >>> words_text("one"), words_text("two words", "more ")
    ('1 word', '2 more words')
    """
    n = word_count(text)
    return f"{n} {more}word{'' if n == 1 else 's'}"


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


@functools.lru_cache(maxsize=64)  # the dialog reruns on every click: the same pair is diffed once
def word_diff(a: str, b: str, max_words: int = DIFF_WORDS) -> list[tuple[str, str]]:
    """The word-level edit from `a` to `b` as (op, text) runs; op is "same", "removed" or "added"; past `max_words`
    words of either text the rest is one "not compared" run for each.

    Words and the whitespace between them are separate tokens, so the runs joined give back each text.

    >>> word_diff("the cat sat", "the dog sat")
    [('same', 'the '), ('removed', 'cat'), ('added', 'dog'), ('same', ' sat')]
    >>> word_diff("a b c", "a x", max_words=1)
    [('same', 'a'), ('not compared', ' b c'), ('not compared', ' x')]
    """
    a_words, b_words = re.findall(r"\S+|\s+", a), re.findall(r"\S+|\s+", b)
    a_rest, b_rest = "".join(a_words[2 * max_words - 1:]), "".join(b_words[2 * max_words - 1:])
    a_words, b_words = a_words[:2 * max_words - 1], b_words[:2 * max_words - 1]  # words and the spaces between
    codes: dict[str, str] = {}  # each distinct token as one character (4 x DIFF_WORDS stay below the surrogates)
    encode = lambda tokens: "".join(codes.setdefault(t, chr(0x100 + len(codes))) for t in tokens)  # noqa: E731
    a_chars, b_chars = encode(a_words), encode(b_words)
    tokens = {code: token for token, code in codes.items()}
    differ = diff_match_patch()
    differ.Diff_Timeout = DIFF_SECONDS
    runs = []
    for op, chars in differ.diff_main(a_chars, b_chars, checklines=False):
        text = "".join(tokens[c] for c in chars)
        if runs and runs[-1][0] == OPS[op]:
            runs[-1] = (OPS[op], runs[-1][1] + text)
        else:
            runs.append((OPS[op], text))
    return runs + [("not compared", rest) for rest in (a_rest, b_rest) if rest]


def similarity(a: str, b: str) -> float:
    """Share of words the two texts have in common, counted with repeats, in linear time.

    >>> similarity("the cat sat", "the dog sat")
    0.6666666666666666
    """
    a_words, b_words = Counter(a.split()), Counter(b.split())
    total = a_words.total() + b_words.total()
    return 2 * (a_words & b_words).total() / total if total else 1.0


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
    "not compared": '<span style="opacity:0.55">{}</span>',
}


def diff_html(a: str, b: str) -> str:
    """The word diff as inert HTML: every text escaped, removals struck through, additions highlighted, and what is
    past DIFF_WORDS said and greyed."""
    runs = word_diff(a, b)
    cut = [text for op, text in runs if op == "not compared"]
    note = (f'<p style="opacity:0.7">Only the first {DIFF_WORDS:,} words of each are compared; the rest is greyed.</p>'
            if cut else "")
    body = "".join(_STYLE[op].format(html.escape(text)) for op, text in runs)
    return f'{note}<div style="white-space:pre-wrap;line-height:1.6">{body}</div>'
