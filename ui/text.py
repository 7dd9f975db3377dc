"""Untrusted text (prompts, completions, names from files) made safe to render as Markdown. No Streamlit here.

Completions come from models and imported files, so they may hold a tracking image, a phishing
link, or Streamlit's own badge and colour syntax imitating the page. Guessing with patterns which
parts of a text are code is how sanitisers get bypassed, so the text is parsed as CommonMark (with
tables and strikethrough) by markdown-it-py and written out again from its syntax tree, keeping
only what we write ourselves: paragraphs, headings, lists, quotes, code, tables, emphasis, breaks.
Every character of text is escaped, an image or a link becomes its text with the address shown as
code, and raw HTML is shown as text. Whatever the input, the output holds no image, link, HTML,
directive or maths, and renders like the original otherwise.
"""

import re

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

PARSER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character can be backslash-escaped
URL = re.compile(r"(?i)\b(?:(?:https?|ftp)://|www\.|mailto:)[^\s<>]+")
WRAP = {"strong": "**", "em": "*", "s": "~~"}


def safe_markdown(text: str) -> str:
    """Markdown that renders like the original but loads nothing remote, links nowhere and imitates nothing.

    >>> print(safe_markdown("![](http://host/beacon.gif) **hi**"))
    \\[image\\] ` http://host/beacon.gif ` **hi**
    >>> print(safe_markdown("[log in again](http://evil.example/login)"))
    log in again \\(` http://evil.example/login `\\)
    >>> print(safe_markdown(":violet-badge[B] and `[x](y)`"))
    \\:violet\\-badge\\[B\\] and ` [x](y) `
    """
    tree = SyntaxTreeNode(PARSER.parse(text.replace("\x00", "\ufffd")))
    return "\n\n".join(_block(node) for node in tree.children)


def _block(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0])
    if kind == "heading":
        return f"{'#' * int(node.tag[1])} {_inline(node.children[0])}"
    if kind in ("fence", "code_block"):
        return _fenced(node.content, re.sub(r"[^A-Za-z0-9_+-]", "", node.info.split(" ")[0]) if kind == "fence" else "")
    if kind == "bullet_list":
        return _list(node, lambda i: "- ")
    if kind == "ordered_list":
        start = int(node.attrs.get("start", 1))
        return _list(node, lambda i: f"{start + i}. ")
    if kind == "blockquote":
        return "\n".join(f"> {line}" if line else ">" for line in _blocks(node.children, "\n\n").split("\n"))
    if kind == "table":
        return _table(node)
    if kind == "hr":
        return "***"
    return _escape(node.content.strip())  # html_block and anything else: shown as text


def _blocks(nodes, separator: str) -> str:
    return separator.join(_block(n) for n in nodes)


def _list(node: SyntaxTreeNode, marker) -> str:
    tight = any(p.hidden for item in node.children for p in item.children if p.type == "paragraph")
    items = []
    for i, item in enumerate(node.children):
        head = marker(i)
        body = _blocks(item.children, "\n" if tight else "\n\n").split("\n")
        items.append("\n".join([head + body[0], *((" " * len(head) + line) if line else "" for line in body[1:])]))
    return ("\n" if tight else "\n\n").join(items)


def _table(node: SyntaxTreeNode) -> str:
    rows = [row for section in node.children for row in section.children]
    lines = ["| " + " | ".join(_inline(cell.children[0]) if cell.children else "" for cell in row.children) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0].children))
    return "\n".join(lines)


def _inline(node: SyntaxTreeNode) -> str:
    out = []
    for child in node.children:
        kind = child.type
        if kind == "text":
            out.append(_text(child.content))
        elif kind == "code_inline":
            out.append(_code(child.content))
        elif kind in WRAP:
            out.append(f"{WRAP[kind]}{_inline(child)}{WRAP[kind]}")
        elif kind == "link":
            address = _code(child.attrs.get("href", ""))
            out.append(address if child.markup == "autolink" else f"{_inline(child)} \\({address}\\)")
        elif kind == "image":
            alt = _inline(child)
            out.append(f"\\[image{': ' + alt if alt else ''}\\] {_code(child.attrs.get('src', ''))}")
        elif kind == "softbreak":
            out.append("\n")
        elif kind == "hardbreak":
            out.append("\\\n")
        else:  # html_inline and anything else: shown as text
            out.append(_escape(child.content))
    return "".join(out)


def _text(text: str) -> str:
    """Plain text, escaped, with web addresses shown as code so that no renderer turns them into links."""
    pieces, last = [], 0
    for match in URL.finditer(text):
        pieces += [_escape(text[last:match.start()]), _code(match.group(0))]
        last = match.end()
    return "".join(pieces + [_escape(text[last:])])


def _escape(text: str) -> str:
    return PUNCTUATION.sub(r"\\\1", text)


def _code(content: str) -> str:
    """A code span that contains `content` exactly, whatever backticks it holds."""
    if not content:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", content)), default=0) + 1)
    return f"{fence} {content} {fence}"


def _fenced(content: str, language: str) -> str:
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", content)), default=0) + 1)
    return f"{fence}{language}\n{content.rstrip(chr(10))}\n{fence}"
