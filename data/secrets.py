"""The server's own secrets: Streamlit's secrets.toml files and the API keys in the environment. Pure: no store.

Only the server reads these; nothing here reaches the database or a page, and `scrub_secrets` takes any key value
back out of text that came from elsewhere (a remote server's error that echoes the key) before it is shown or stored.
"""

import os
import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILES = (PROJECT_ROOT / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml")  # Streamlit's places
SECRETS_TABLE = "remote_api_keys"  # in secrets.toml: [remote_api_keys] VLLM_API_KEY = "..."
REDACTED = "[key removed]"


def scrub_secrets(text: str) -> str:
    """`text` with every API key the server holds (variables named *_API_KEY, secrets.toml's keys) removed.

    >>> os.environ["DOCTEST_API_KEY"] = "sk-abc123xyz"
    >>> scrub_secrets("Incorrect API key provided: sk-abc123xyz.")
    'Incorrect API key provided: [key removed].'
    >>> del os.environ["DOCTEST_API_KEY"]
    """
    values = [v for k, v in os.environ.items() if k.endswith("_API_KEY")]
    values += [v for doc in secret_files() for v in doc.get(SECRETS_TABLE, {}).values() if isinstance(v, str)]
    for value in sorted({v for v in values if len(v) >= 6}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def trusted_proxies() -> list[str]:
    """Addresses (or networks) of the reverse proxies in front of the app, whose X-Forwarded-For is believed:
    $RLHF_TRUSTED_PROXIES ("10.0.0.5, 10.1.0.0/16") or `trusted_proxies = [...]` in secrets.toml; none by default."""
    if os.environ.get("RLHF_TRUSTED_PROXIES"):
        return [p for p in os.environ["RLHF_TRUSTED_PROXIES"].replace(",", " ").split() if p]
    listed = next((doc["trusted_proxies"] for doc in secret_files() if "trusted_proxies" in doc), [])
    return [p for p in ([listed] if isinstance(listed, str) else listed) if isinstance(p, str)]


def secret(table: str, name: str):
    """`name` under `[table]` in the first of Streamlit's secrets.toml files that has it, or None."""
    return next((doc[table][name] for doc in secret_files() if name in doc.get(table, {})), None)


def secret_files() -> list[dict]:
    """Streamlit's secrets.toml files that exist, read now (so a change needs no restart)."""
    return [tomllib.loads(path.read_text()) for path in SECRETS_FILES if path.is_file()]
