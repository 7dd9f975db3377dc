"""What identifies an item's content, as a pure function: the store's migrations and data.items share it, so a
hash written by a migration and one written by an import always agree (and neither module imports the other)."""

import hashlib
import json


def content_hash(prompt_set: str, prompt: str, completions: list[str]) -> str:
    """What identifies an item's content: the same set, prompt and completions in the same order.

    >>> content_hash("s", "p", ["a", "b"]) == content_hash("s", "p", ["a", "b"]) != content_hash("s", "p", ["b", "a"])
    True
    """
    return hashlib.sha256(json.dumps([prompt_set, prompt, completions], ensure_ascii=False).encode()).hexdigest()
