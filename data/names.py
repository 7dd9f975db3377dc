"""Lists of names in a trainer's or an export's config (prompt sets, annotators): one parser for every config, the
command line and job arguments stored before lists were lists. Pure: no store."""

import json


def name_list(value) -> list[str]:
    """A list of names from a list (as a screen or a stored job gives it), a JSON list (the command line, for names
    holding commas) or a comma-separated string (the command line; a job stored by an earlier version).

    >>> name_list(["a, b", "c"]), name_list('["a, b", "c"]'), name_list("a, b,,c"), name_list(""), name_list(None)
    (['a, b', 'c'], ['a, b', 'c'], ['a', 'b', 'c'], [], [])
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of names, got {value!r}")
    return [v for v in value if v.strip()]
