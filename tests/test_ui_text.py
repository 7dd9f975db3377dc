"""Untrusted text rendered as Markdown: nothing remote, no link, no HTML, no imitation, whatever the input."""

import random
import re

import pytest
from markdown_it import MarkdownIt

from ui.text import safe_markdown

RENDER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
BYPASSES = [  # each of these got an image or a link through a pattern-based sanitiser
    "`![x](http://evil/b.gif)``",
    "``[click](http://evil/login)`",
    "``` `\n![x](http://evil/b.gif)\n```",
    "```\n[a](b)\n```x\n![x](http://evil/b.gif)\n```\n![y](http://evil/c.gif)",
    "- item\n  ```\n[x](http://evil)\n```",
    "`abc\ndef` ![](http://evil) `x`",
    "[ref]: http://evil\n\n[ref] and ![ref]",
    "<img src=x onerror=alert(1)> <http://evil/autolink> <a href='http://evil'>x</a>",
    "see http://evil.example/login and www.evil.example",
]


def html_of(text: str) -> str:
    return RENDER.render(safe_markdown(text))


@pytest.mark.parametrize("text", BYPASSES)
def test_known_bypasses_render_no_image_link_or_html(text):
    html = html_of(text)
    assert not re.search(r"<img|<a\b|<script", html), html  # escaped HTML shows as &lt;img ...: text


def test_random_markdown_soup_never_renders_an_image_link_or_html():
    rng = random.Random(0)
    alphabet = list("[]()!<>`*_~:|#->= \n\\xyhttp:/.")
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        assert not re.search(r"<img|<a\b", html_of(text)), text


def test_streamlit_directives_and_maths_are_shown_as_text():
    out = safe_markdown(":violet-badge[Completion **B**] :material/lock: :red[x] $x^2$")
    assert ":violet-badge[" not in out and ":material/" not in out and "\\$x" in out
    assert "\\:violet\\-badge\\[Completion **B**\\]" in out  # still readable, emphasis kept


def test_formatted_answers_stay_formatted():
    text = "# Title\n\n1. one\n2. two\n   - nested **bold**, *em*, ~~gone~~ and `code`\n\n> a quote\n\n```python\nprint('[x](y)')\n```"
    html = html_of(text)
    for tag in ("<h1>", "<ol>", "<ul>", "<strong>", "<em>", "<code>", "<blockquote>", "<pre><code class=\"language-python\">"):
        assert tag in html, tag
    assert "print('[x](y)')" in html  # code exactly as written


def test_a_nul_character_cannot_break_the_page():
    assert safe_markdown("x \x000\x00") == "x \ufffd0\ufffd"
