"""Remote generators: models served over an OpenAI-compatible API (vLLM, llama.cpp, TGI, Ollama, hosted APIs).

The store keeps where a model is served and how to sample it, and the NAME of the environment
variable (or `.streamlit/secrets.toml` key) that holds its API key: never the key itself, so no
key reaches the database, a backup, an export, a job's log or a page.
"""

import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from sqlite_utils import Database

from data.accounts import User, require_admin
from data.store import now, write_transaction

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILES = (PROJECT_ROOT / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml")  # Streamlit's places
# Only variables named for the purpose: an admin on the web page must not be able to send any server secret
# (AWS_SECRET_ACCESS_KEY, HF_TOKEN, ...) as a bearer token to a URL of their choice.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,90}_API_KEY")
SECRETS_TABLE = "remote_api_keys"  # in secrets.toml: [remote_api_keys] VLLM_API_KEY = "..."
# A key pasted where its variable's name belongs: a provider's prefix, or 32+ characters of mixed case (a variable
# name is upper case, however long: AZURE_OPENAI_DEPLOYMENT_EU_API_KEY is a name).
LOOKS_LIKE_A_KEY = re.compile(r"^(sk-|sk_|hf_|gsk_|xai-|AIza)|^(?=.*[a-z])[A-Za-z0-9_\-]{32,}$")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


@dataclass
class RemoteGenerator:
    name: str  # how the app names its completions (provenance, leaderboard)
    base_url: str  # e.g. http://localhost:8080/v1
    model: str  # the model name the server expects
    api_key_env: str = ""  # the variable holding the key; "" for a server without one
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 128
    concurrency: int = 4  # requests in flight at once
    timeout_s: float = 60.0  # per request, before a retry
    retries: int = 3  # on connection errors, 408, 429 and 5xx, with exponential back-off
    id: int | None = field(default=None, compare=False)

    def __post_init__(self):
        check_remote_generator(self)


def check_remote_generator(g: RemoteGenerator) -> None:
    """Refuse what would fail at generation time, or store a secret, with what to do instead."""
    if not NAME.fullmatch(g.name or ""):
        raise ValueError("name the generator with letters, digits, '.', '_' or '-' (up to 64), e.g. llama-3-8b")
    url = urlparse(g.base_url or "")
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"the base URL must be an http(s) address such as http://localhost:8080/v1, got {g.base_url!r}")
    if url.username or url.password or url.query:
        raise ValueError("put no credentials or query in the base URL: the key goes in an environment variable")
    if not (g.model or "").strip():
        raise ValueError("say which model the server should run (its name in the server's /v1/models)")
    if g.api_key_env and LOOKS_LIKE_A_KEY.search(g.api_key_env):
        raise ValueError("that looks like an API key itself: give the NAME of the environment variable that holds it "
                         "(e.g. OPENAI_API_KEY); the key is never stored")
    if g.api_key_env and not ENV_NAME.fullmatch(g.api_key_env):
        raise ValueError(f"{g.api_key_env!r} cannot hold a remote generator's key: name a variable that ends in _API_KEY "
                         "(letters, digits and '_', e.g. VLLM_API_KEY), so no other server secret can be sent out")
    if not 0 < g.temperature <= 5 or not 0 < g.top_p <= 1:
        raise ValueError("temperature must be in (0, 5] and top_p in (0, 1]")
    if not 1 <= g.max_tokens <= 32_768 or not 1 <= g.concurrency <= 64 or not 1 <= g.timeout_s <= 3600 or not 0 <= g.retries <= 10:
        raise ValueError("max tokens 1-32768, concurrency 1-64, timeout 1-3600 s, retries 0-10")


def save_remote_generator(db: Database, g: RemoteGenerator, actor: User | None) -> int:
    """Register a remote generator, or update the one of that name. `actor`: the admin asking (None from the CLI),
    re-checked inside the transaction."""
    check_remote_generator(g)
    settings = {k: v for k, v in asdict(g).items() if k not in ("id", "name")}
    with write_transaction(db):
        require_admin(db, actor)
        if db.execute("SELECT 1 FROM model_versions WHERE kind = 'generator' AND name = ?", [g.name]).fetchone():
            raise ValueError(f"a generator version is named {g.name!r}: give the remote generator another name, so "
                             "completions and the leaderboard tell them apart")
        db.execute("""INSERT INTO remote_generators (name, settings, created_at) VALUES (?, ?, ?)
                      ON CONFLICT (name) DO UPDATE SET settings = excluded.settings""",
                   [g.name, json.dumps(settings), now()])
    return db.execute("SELECT id FROM remote_generators WHERE name = ?", [g.name]).fetchone()[0]


def delete_remote_generator(db: Database, name: str, actor: User | None) -> None:
    """Forget a remote generator; its completions keep their provenance."""
    with write_transaction(db):
        require_admin(db, actor)
        db.execute("DELETE FROM remote_generators WHERE name = ?", [name])


def remote_generators(db: Database) -> list[RemoteGenerator]:
    """The registered remote generators today's rules accept (see `refused_remote_generators` for the others)."""
    return [g for g in (_or_problem(row) for row in _rows(db)) if isinstance(g, RemoteGenerator)]


def refused_remote_generators(db: Database) -> list[dict]:
    """Rows saved under older rules that today's refuse (say a key variable no longer allowed): name and why, so an
    admin can remove or re-save them; nothing uses them meanwhile."""
    return [{"name": row[1], "problem": g} for row in _rows(db) if isinstance(g := _or_problem(row), str)]


def _rows(db: Database) -> list:
    return db.execute("SELECT id, name, settings FROM remote_generators ORDER BY name").fetchall()


def _or_problem(row) -> RemoteGenerator | str:
    try:
        return _from_row(row)
    except (ValueError, TypeError) as error:
        return str(error)


def remote_generator(db: Database, name: str) -> RemoteGenerator:
    row = db.execute("SELECT id, name, settings FROM remote_generators WHERE name = ?", [name]).fetchone()
    if row is None:
        known = ", ".join(g.name for g in remote_generators(db)) or "none yet"
        raise LookupError(f"no remote generator named {name!r} (registered: {known}): add it under Data → Generate")
    return _from_row(row)


def _from_row(row) -> RemoteGenerator:
    return RemoteGenerator(name=row[1], **json.loads(row[2]), id=row[0])


def api_key(g: RemoteGenerator) -> str | None:
    """The key, read when a job needs it: the environment variable, else that name in secrets.toml's [remote_api_keys]."""
    if not g.api_key_env:
        return None
    check_remote_generator(g)  # a name stored before the rules tightened is refused here too
    if os.environ.get(g.api_key_env):
        return os.environ[g.api_key_env]
    for path in SECRETS_FILES:
        if path.is_file():
            value = tomllib.loads(path.read_text()).get(SECRETS_TABLE, {}).get(g.api_key_env)
            if isinstance(value, str) and value:
                return value
    raise LookupError(f"remote generator {g.name!r} reads its API key from {g.api_key_env}, which is not set: export "
                      f"{g.api_key_env}=... where the app runs, or add it under [{SECRETS_TABLE}] in .streamlit/secrets.toml")


def parse_mix(text: str) -> dict[str, int]:
    """`"llama=2, gpt=1"` -> {"llama": 2, "gpt": 1}: how many of an item's completions each remote generator writes.

    >>> parse_mix("llama=2, gpt = 1")
    {'llama': 2, 'gpt': 1}
    >>> parse_mix("")
    {}
    """
    mix = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, count = (s.strip() for s in part.partition("="))
        if not NAME.fullmatch(name) or not count.isdigit() or int(count) < 1 or name in mix:
            raise ValueError(f"cannot read {part!r}: write each remote generator once as NAME=COUNT, e.g. llama=2, gpt=2")
        mix[name] = int(count)
    return mix
