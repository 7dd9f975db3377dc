"""The annotate screen's comparison helpers: layout rows, long answers, the word diff."""

import html
import re

import pytest

from ui import compare
from ui.compare import diff_html, grid_rows, similarity, split_long, word_diff


@pytest.mark.parametrize("k, side_by_side, rows", [
    (2, True, [[0, 1]]), (3, True, [[0, 1, 2]]), (4, True, [[0, 1], [2, 3]]), (6, True, [[0, 1, 2], [3, 4, 5]]),
    (9, True, [[0, 1, 2], [3, 4, 5], [6, 7, 8]]), (4, False, [[0], [1], [2], [3]]),
])
def test_grid_rows_puts_each_completion_once_in_the_layout_the_issue_asks_for(k, side_by_side, rows):
    assert grid_rows(k, side_by_side) == rows


def test_a_long_answer_splits_between_paragraphs_and_the_halves_give_it_back():
    paragraphs = [" ".join(f"w{p}_{i}" for i in range(40)) for p in range(12)]
    text = "\n\n".join(paragraphs)
    head, tail = split_long(text, head_words=100)
    assert head == "\n\n".join(paragraphs[:3]) and tail == "\n\n".join(paragraphs[3:])
    assert split_long("a few words", head_words=100) == ("a few words", "")


def test_a_long_answer_is_never_cut_inside_a_code_block():
    code = "```python\n" + "\n\n".join(f"x{i} = {i}  # " + "word " * 30 for i in range(5)) + "\n```"
    text = "intro " * 10 + "\n\n" + code + "\n\n" + "outro " * 200
    head, tail = split_long(text, head_words=30)
    assert head.count("```") % 2 == 0 and tail.count("```") % 2 == 0
    assert head.endswith("```") and tail.startswith("outro")


def test_one_huge_paragraph_is_shown_whole():
    text = "word " * 1000
    assert split_long(text, head_words=50) == (text, "")


@pytest.mark.parametrize("a, b", [
    ("The capital of France is Paris.", "The capital of France is Paris, a city on the Seine."),
    ("one two three", "three two one"),
    ("", "all new"),
    ("line one\n\nline  two\t", "line one\nline two"),
])
def test_the_word_diff_gives_back_both_texts(a, b):
    runs = word_diff(a, b)
    assert "".join(t for op, t in runs if op != "added") == a
    assert "".join(t for op, t in runs if op != "removed") == b


def test_the_word_diff_marks_only_the_changed_words():
    assert word_diff("Paris is big.", "Paris is large.") == [("same", "Paris is "), ("removed", "big."), ("added", "large.")]
    assert similarity("a b c d", "a b c e") == pytest.approx(0.75)


def test_the_diff_html_is_inert():
    hostile = "<script>alert(1)</script> <img src=x onerror=alert(2)>"
    out = diff_html(hostile, hostile + " more")
    assert "<script" not in out and "<img" not in out
    assert html.escape("<script>") in out
    assert re.findall(r"<ins[^>]*>(.*?)</ins>", out) == [" more"]


def test_huge_answers_are_diffed_against_a_deadline_once_and_choosing_the_pair_is_linear(monkeypatch):
    """Trust pass 3, finding 6: 10,000 words took 98 s of the server's CPU, again on every press of D (difflib is worse
    than quadratic on repetitive text). Checked by what is asked of the differ, not by timing this machine."""
    words = ["the", "a", "of", "and", "to", "cat", "dog"]
    a = " ".join(words[i % 7] for i in range(12_000))
    b = " ".join(words[(i * 3) % 7] for i in range(12_000))
    asked = []

    class Recording(compare.diff_match_patch):
        def diff_main(self, text1, text2, checklines=True, deadline=None):
            if deadline is None:  # the outer call (it recurses with a deadline)
                asked.append((len(text1), len(text2), self.Diff_Timeout))
            return super().diff_main(text1, text2, checklines, deadline)

    monkeypatch.setattr(compare, "diff_match_patch", Recording)
    compare.word_diff.cache_clear()
    runs = word_diff(a, b)
    assert asked == [(2 * compare.DIFF_WORDS - 1, 2 * compare.DIFF_WORDS - 1, compare.DIFF_SECONDS)]
    assert 0 < compare.DIFF_SECONDS <= 1
    assert "".join(t for op, t in runs if op in ("same", "removed")) + runs[-2][1] == a  # nothing lost: the rest shown
    assert "".join(t for op, t in runs if op in ("same", "added")) + runs[-1][1] == b
    assert word_diff(a, b) is runs and len(asked) == 1  # the dialog's reruns reuse it
    assert "Only the first 5,000 words of each are compared" in diff_html(a, b)
    compare.most_similar_pair([a, b, a, b])  # bag-of-words: no differ at all
    assert len(asked) == 1
