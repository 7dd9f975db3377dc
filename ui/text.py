"""Untrusted text (prompts, completions, names from files) made safe to show. No Streamlit here.

Completions come from models and imported files, so they may hold a tracking image, a phishing link, or
Streamlit's own badge and colour syntax imitating the page. Two rules keep that inert:

1. A block of untrusted text never reaches the browser as Markdown. Streamlit's frontend parses Markdown with
   remark-gfm, whose tables and autolinks differ from any parser we could run here, so re-emitted Markdown can be
   read differently there (a `|` inside a code span ends a table cell; an e-mail address becomes a link even when
   escaped). Instead the text is rendered to HTML here by markdown-it-py (CommonMark with tables and strikethrough,
   raw HTML shown as text), every link and image becomes visible text with its address as code, and nh3 (a
   maintained allowlist sanitiser) keeps only formatting tags without attributes. The page shows that HTML with
   `st.html`, which does not parse Markdown. If the rendering lost any word of the text (nesting deeper than the
   parser follows, a reference definition nobody uses, an entity), the whole text is shown as plain text instead:
   what an annotator sees always holds every word that is exported and trained on.
2. An untrusted value inside our own Markdown (a name in a caption, a message in an alert) is one line inside a
   code span, which no Markdown renderer formats, links or splits.
"""

import html
import re
from collections import Counter

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

PARSER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "pre", "code", "table", "thead",
        "tbody", "tr", "th", "td", "em", "strong", "s", "br", "hr", "div"}
ATTRIBUTES = {"ol": {"start"}, "th": {"style"}, "td": {"style"}, "div": {"class"}}
WORD = re.compile(r"[^\W_]+")  # letters and digits: what markup never makes or removes, except
ENTITY = re.compile(r"&#?\w+;")  # entities (shown decoded) and a list item's number (its `info`)
PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character can be backslash-escaped
ADDRESS = re.compile(r"(?i)@|://|www\.")  # what GFM's autolinks start from
MAX_LINE = 2000  # characters of one inline value shown in a caption or an alert


def untrusted_html(text: str) -> str:
    """HTML that shows `text`'s Markdown formatting but loads nothing, links nowhere and drops no word.

    >>> untrusted_html("![](http://host/beacon.gif) **hi**")
    '<div class="untrusted"><p>[image] <code>http://host/beacon.gif</code> <strong>hi</strong></p>\\n</div>'
    >>> untrusted_html("[log in again](http://evil.example/login) <b>x</b>")
    '<div class="untrusted"><p>log in again (<code>http://evil.example/login</code>) &lt;b&gt;x&lt;/b&gt;</p>\\n</div>'
    >>> untrusted_html("12*7 = 84 and 3*4*5 = 60, __init__, *kept* and **bold**")  # no character lost to emphasis
    '<div class="untrusted"><p>12*7 = 84 and 3*4*5 = 60, __init__, <em>kept</em> and <strong>bold</strong></p>\\n</div>'
    >>> untrusted_html("ok\\n\\n" + ">" * 25 + " hidden")  # deeper than the parser follows: all of it as text
    '<div class="untrusted plain">ok\\n\\n&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt;&gt; hidden</div>'
    """
    text = text.replace("\x00", "\ufffd")
    tokens = []
    for token in PARSER.parse(text):
        if token.type == "inline" and token.children:
            token.children = _literal_asterisks_and_underscores(_defused(token.children))
        if token.type == "fence" and token.info.strip():  # the language line is shown: nothing hides there
            tokens += _paragraph(_token("code_inline", token.info.strip()))
        tokens.append(token)
    rendered = nh3.clean(PARSER.renderer.render(tokens, PARSER.options, {}), tags=TAGS, attributes=ATTRIBUTES,
                         link_rel=None, filter_style_properties={"text-align"}, strip_comments=True)
    if _words(_visible(rendered)) >= _words(ENTITY.sub(" ", text)) - _words(" ".join(t.info for t in tokens if t.type == "list_item_open")):
        return f'<div class="untrusted">{rendered}</div>'
    return f'<div class="untrusted plain">{html.escape(text)}</div>'


def inline(text: str) -> str:
    """Markdown for an untrusted value inside our own Markdown (a caption, an alert, a label): one line, every
    punctuation mark escaped, and each word that could become a link (an address, an e-mail) in a code span, which
    GFM's autolinks do not enter. One line has no table; escaped, it has no emphasis, link, image, directive or maths.

    >>> print(inline("[x](http://evil) :red[y]\\nmail a@b.co | **z**"))
    ` [x](http://evil) ` \\:red\\[y\\] mail ` a@b.co ` \\| \\*\\*z\\*\\*
    """
    line = " ".join(text.replace("\x00", "\ufffd").split())
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE] + "…"
    return " ".join(_code(word) if ADDRESS.search(word) else PUNCTUATION.sub(r"\\\1", word) for word in line.split(" "))


def _defused(children: list[Token]) -> list[Token]:
    """Inline tokens with every link and image turned into text plus its address as code."""
    out, links = [], []  # links: the open link's address, or None for an autolink (its text is the address)
    for child in children:
        if child.type == "link_open":
            links.append(None if child.markup == "autolink" else str(child.attrs.get("href", "")))
        elif child.type == "link_close":
            href = links.pop()
            if href is not None:
                out += [_token("text", " ("), _token("code_inline", href), _token("text", ")")]
        elif child.type == "image":
            alt = "".join(c.content for c in child.children or [])
            out += [_token("text", f"[image{': ' + alt if alt else ''}] "), _token("code_inline", str(child.attrs.get("src", "")))]
        else:
            out.append(child)
    return out


def _literal_asterisks_and_underscores(children: list[Token]) -> list[Token]:
    """Emphasis kept only where it cannot be content: `_`/`__` emphasis (`__init__`) and `*` emphasis that opens or
    closes inside a word (`12*7 = 84 and 3*4`) are turned back into the characters they were, so maths and code in
    prose keep every `*` and `_` annotators need to judge them. `**bold**` and `*italic*` between words stay."""
    pairs, stack = {}, []
    for i, child in enumerate(children):
        if child.type in ("em_open", "strong_open"):
            stack.append(i)
        elif child.type in ("em_close", "strong_close") and stack:
            pairs[stack.pop()] = i
    literal = set()
    for start, end in pairs.items():
        if "_" in children[start].markup or _inside_word(children, start) or _inside_word(children, end):
            literal |= {start, end}
    return [_token("text", child.markup) if i in literal else child for i, child in enumerate(children)]


def _inside_word(children: list[Token], i: int) -> bool:
    """Whether the delimiter token at i has a letter or digit right before and right after it."""
    before = children[i - 1].content if i > 0 and children[i - 1].type == "text" else ""
    after = children[i + 1].content if i + 1 < len(children) and children[i + 1].type == "text" else ""
    return bool(before[-1:].isalnum() and after[:1].isalnum())


def _paragraph(*children: Token) -> list[Token]:
    inline = Token("inline", "", 0, children=list(children), content=" ")
    return [Token("paragraph_open", "p", 1), inline, Token("paragraph_close", "p", -1)]


def _token(kind: str, content: str) -> Token:
    return Token(kind, "", 0, content=content)


def _visible(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", " ", rendered))


def _words(text: str) -> Counter:
    return Counter(WORD.findall(text))


def _code(content: str) -> str:
    """A code span that contains `content` exactly, whatever backticks it holds."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", content)), default=0) + 1)
    return f"{fence} {content} {fence}"
