"""Untrusted text (prompts, completions) made safe to render as Markdown. Pure functions, no Streamlit.

Completions come from models and imported files, so they may hold a tracking image, a phishing
link, or Streamlit's own colour and badge syntax imitating the page. Outside code, brackets and
angle brackets are escaped (no image, link, autolink or `:color[...]` directive can form) and
bare URLs are shown as code; code spans and fenced blocks stay exactly as written. Emphasis,
lists, headings, tables and code keep rendering, so formatted answers stay readable.
"""

import re

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
BARE_URL = re.compile(r"(?i)\b((?:https?|ftp)://|www\.|mailto:|javascript:|data:)[^\s`<>\]\[]*")
SPECIAL = re.compile(r"([\[\]<>])")
ICON = re.compile(r":(?=material/)")


def safe_markdown(text: str) -> str:
    """Markdown that renders like the original but loads nothing remote and links nowhere.

    >>> safe_markdown("![](http://host/beacon.gif) hi")
    '\\\\[image\\\\] `http://host/beacon.gif` hi'
    >>> safe_markdown("[log in again](http://evil.example/login)")
    'log in again (`http://evil.example/login`)'
    >>> safe_markdown(":violet-badge[**B**] and `[x](y)`")
    ':violet-badge\\\\[**B**\\\\] and `[x](y)`'
    """
    return _outside_code(text)


def _outside_code(text: str) -> str:
    """Apply `_neutralise` to everything but fenced blocks and code spans."""
    parts, fence, buffer = [], None, []
    for line in text.split("\n"):
        opening = FENCE.match(line)
        if fence is None and opening:
            if buffer:
                parts.append(_inline("\n".join(buffer)))
            buffer, fence = [line], opening.group(1)
        elif fence is not None:
            buffer.append(line)
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence) and len(buffer) > 1:
                parts.append("\n".join(buffer))
                buffer, fence = [], None
        else:
            buffer.append(line)
    if buffer:
        parts.append("\n".join(buffer) if fence is not None else _inline("\n".join(buffer)))
    return "\n".join(parts)


def _inline(text: str) -> str:
    pieces, last = [], 0
    for match in INLINE_CODE.finditer(text):
        pieces.append(_neutralise(text[last:match.start()]))
        pieces.append(match.group(0))
        last = match.end()
    pieces.append(_neutralise(text[last:]))
    return "".join(pieces)


def _neutralise(text: str) -> str:
    code = []  # URLs set aside as code spans, so the escaping below leaves them readable

    def as_code(url: str) -> str:
        code.append(f"`{url.replace('`', '%60')}`" if url else "")
        return f"\x00{len(code) - 1}\x00"

    text = IMAGE.sub(lambda m: f"[image{': ' + m.group(1) if m.group(1) else ''}] {as_code(m.group(2))}", text)
    text = LINK.sub(lambda m: f"{m.group(1)} ({as_code(m.group(2))})", text)
    text = BARE_URL.sub(lambda m: as_code(m.group(0)), text)
    text = ICON.sub(r"\\:", SPECIAL.sub(r"\\\1", text))
    return re.sub("\x00(\\d+)\x00", lambda m: code[int(m.group(1))], text)
