"""Remote generators: models served over an OpenAI-compatible API (vLLM, llama.cpp, TGI, Ollama, hosted APIs).

The store keeps where a model is served and how to sample it, and the NAME of the environment
variable (or `.streamlit/secrets.toml` key) that holds its API key: never the key itself, so no
key reaches the database, a backup, an export, a job's log or a page.

Where a key may go is decided on the server, never on the page: each key variable is bound to the base URLs it may
be sent to (`[remote_api_key_urls]` in secrets.toml, or `<NAME>_URLS` in the environment); a generator at any other
address gets no key. Link-local addresses (a cloud's metadata service at 169.254.169.254) are refused unless the
server allows them. Any key value that comes back in a server's error is replaced before it is shown or stored.
"""

import ipaddress
import json
import os
import re
import socket
from dataclasses import asdict, dataclass, field
from urllib.parse import urlparse

from sqlite_utils import Database

from data import audit
from data.accounts import User, require_admin
from data.secrets import SECRETS_TABLE, secret, secret_files
from data.store import now, write_transaction

# Only variables named for the purpose: an admin on the web page must not be able to send any server secret
# (AWS_SECRET_ACCESS_KEY, HF_TOKEN, ...) as a bearer token to a URL of their choice.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,90}_API_KEY")
URLS_TABLE = "remote_api_key_urls"  # in secrets.toml: [remote_api_key_urls] VLLM_API_KEY = ["http://gpu-box:8000/v1"]
URLS_SUFFIX = "_URLS"  # or the environment: VLLM_API_KEY_URLS="http://gpu-box:8000/v1 https://api.example.com/v1"
LINK_LOCAL_SETTING = "RLHF_ALLOW_LINK_LOCAL"  # =1 in the environment (or allow_link_local = true in secrets.toml)
METADATA_HOSTS = {"metadata", "metadata.google.internal", "metadata.azure.com", "instance-data"}
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
    if _link_local(url.hostname or "") and not link_local_allowed():
        raise ValueError(f"{url.hostname} is a link-local or metadata address (where a cloud machine keeps its own "
                         f"credentials): refused unless the server sets {LINK_LOCAL_SETTING}=1")
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
        audit.record(db, actor, "save remote generator", g.name, {"base_url": g.base_url, "model": g.model,
                                                                   "key variable": g.api_key_env})
    return db.execute("SELECT id FROM remote_generators WHERE name = ?", [g.name]).fetchone()[0]


def delete_remote_generator(db: Database, name: str, actor: User | None) -> None:
    """Forget a remote generator; its completions keep their provenance."""
    with write_transaction(db):
        require_admin(db, actor)
        if db.execute("DELETE FROM remote_generators WHERE name = ?", [name]).rowcount:
            audit.record(db, actor, "remove remote generator", name)


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
    """The key, read when a job needs it: the environment variable, else that name in secrets.toml's [remote_api_keys];
    only for a base URL the server bound that variable to."""
    if not g.api_key_env:
        return None
    check_remote_generator(g)  # a name stored before the rules tightened is refused here too
    check_bound(g)
    if os.environ.get(g.api_key_env):
        return os.environ[g.api_key_env]
    value = secret(SECRETS_TABLE, g.api_key_env)
    if isinstance(value, str) and value:
        return value
    raise LookupError(f"remote generator {g.name!r} reads its API key from {g.api_key_env}, which is not set: export "
                      f"{g.api_key_env}=... where the app runs, or add it under [{SECRETS_TABLE}] in .streamlit/secrets.toml")


def bound_urls(name: str) -> list[str]:
    """The base URLs the server lets key variable `name` be sent to: $<name>_URLS, else secrets.toml's list."""
    if os.environ.get(name + URLS_SUFFIX):
        return re.split(r"[\s,]+", os.environ[name + URLS_SUFFIX].strip())
    urls = secret(URLS_TABLE, name) or []
    return [urls] if isinstance(urls, str) else [u for u in urls if isinstance(u, str)]


def check_bound(g: RemoteGenerator) -> None:
    """Refuse to send `g.api_key_env` anywhere but the base URLs (or paths under them) bound to it on the server."""
    allowed = bound_urls(g.api_key_env)
    if not allowed:
        raise PermissionError(f"{g.api_key_env} is bound to no address, so it is sent nowhere: on the server, add "
                              f'{g.api_key_env} = ["{g.base_url}"] under [{URLS_TABLE}] in .streamlit/secrets.toml '
                              f"(or export {g.api_key_env}{URLS_SUFFIX}={g.base_url})")
    if not any(_under(g.base_url, url) for url in allowed):
        raise PermissionError(f"{g.api_key_env} may be sent only to {', '.join(allowed)}, not to {g.base_url}: use "
                              f"one of those, or bind the key to this address on the server ([{URLS_TABLE}])")


def _under(url: str, allowed: str) -> bool:
    """Same scheme, host and port, and a path at or under the allowed one (whole segments)."""
    a, b = urlparse(url), urlparse(allowed)
    if (a.scheme, (a.hostname or "").lower(), _port(a)) != (b.scheme, (b.hostname or "").lower(), _port(b)):
        return False
    base = b.path.rstrip("/")
    return a.path.rstrip("/") == base or a.path.startswith(base + "/")


def _port(url) -> int | None:
    try:
        return url.port or {"http": 80, "https": 443}.get(url.scheme)
    except ValueError:
        return None


def _link_local(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host in METADATA_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_link_local


def refuse_link_local_resolution(g: RemoteGenerator) -> None:
    """Before connecting: refuse a host name that resolves to a link-local address (a name pointing at the metadata
    service), unless the server allows it. A name that does not resolve is left to the client's own error."""
    host = urlparse(g.base_url).hostname or ""
    if link_local_allowed():
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return
    if any(_link_local(a.split("%")[0]) for a in addresses):
        raise PermissionError(f"{host} resolves to a link-local address (a cloud's metadata service): refused unless "
                              f"the server sets {LINK_LOCAL_SETTING}=1")


def link_local_allowed() -> bool:
    return os.environ.get(LINK_LOCAL_SETTING) == "1" or any(doc.get("allow_link_local") is True for doc in secret_files())


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
