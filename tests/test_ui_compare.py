"""The annotate screen's comparison helpers: layout rows, long answers, the word diff."""

import html
import re

import pytest

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
