"""N annotators at once against the real server, over Streamlit's own websocket protocol (no browser).

    python -m bench.annotate_load --clients 1 8 32 64 --submits-per-client 10 [--pace 0] [--db FILE] [--port 8599]

Without --db it seeds a temporary database like bench.annotate_latency (10,000 prompts, K=4,
50,000 rankings from 100 annotators). It starts `streamlit run app.py` on that database; each
client is one browser tab: it opens /_stcore/stream, logs in through the log-in form with its own
account (load-1, load-2, ...), then types a ranking and presses "Submit ranking" again and again.
A submit's latency is the round trip from the rerun message to the end of the script run; it
counts as acknowledged when the reply shows a "Saved" message and no error. After each client
count the database is asked how many rankings each account really stored, to catch lost ones.
Prints a table; writes bench/out/annotate_load.json.

Widgets are found by type and label only, like a person reads the screen: the pages' layout and
widget ids may change without breaking this client.
"""

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Block_pb2 import Block
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from websockets.asyncio.client import connect  # the websocket client Streamlit itself depends on
from websockets.exceptions import ConnectionClosed

from bench.annotate_latency import seed
from bench.common import median, percentile, save
from data import accounts, builtin
from data.rankings import LETTERS
from data.store import open_db

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "load-password-1"
REPLY_TIMEOUT_S = 120  # one script run; far above any healthy run, so a hang is an error, not a stall


class ScreenError(RuntimeError):
    """The app did not show what a person would need to go on (a missing widget, a refused log-in)."""


# ----------------------------------------------------------------------------- the database


def prepare_db(path: Path, seed_it: bool, n_accounts: int) -> None:
    """Seed (when asked) and make sure the admin and the load-N accounts exist with known passwords."""
    db = open_db(path)
    builtin.init_db(db)
    if seed_it:
        # Only the seeded set; the builtin set's row stays, so each session's init_db leaves it alone.
        for table in ("completions", "items", "prompts"):
            db.execute(f"DELETE FROM {table}")
        seed(db, n_prompts=10_000, k=4, n_rankings=50_000, n_annotators=100)
    with contextlib.suppress(accounts.AuthError):  # an admin, else the app shows the first-admin form
        accounts.create_user(db, "admin", "admin-password-1", role="admin")
    for name in account_names(n_accounts):
        try:
            accounts.create_user(db, name, PASSWORD, role="annotator")
        except accounts.AuthError:  # left by an earlier run on the same --db: make its password ours again
            db.execute("UPDATE annotators SET password_hash = ?, disabled = 0 WHERE name = ?", [accounts.hash_password(PASSWORD), name])
    db.conn.close()


def account_names(n: int) -> list[str]:
    return [f"load-{i}" for i in range(1, n + 1)]


def stored_rankings(path: Path, names: list[str]) -> dict[str, int]:
    """Rankings (not skips) each account has in the database right now."""
    db = open_db(path)
    rows = db.execute(
        f"""SELECT a.name, COUNT(r.id) FROM annotators a
            LEFT JOIN rankings r ON r.annotator_id = a.id AND r.skipped = 0
            WHERE a.name IN ({", ".join("?" * len(names))}) GROUP BY a.name""", names).fetchall()
    db.conn.close()
    return {name: count for name, count in rows}


# ----------------------------------------------------------------------------- the server


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def streamlit_server(db_path: Path, port: int, log_path: Path):
    """`streamlit run app.py` on db_path, healthy on entry, stopped on exit (errors and Ctrl-C too)."""
    if not port_is_free(port):
        raise RuntimeError(f"port {port} is in use: pass another --port")
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    env = {**os.environ, "RLHF_DB": str(db_path), "HF_HUB_OFFLINE": "1"}
    with open(log_path, "wb") as log:
        # Its own session: Ctrl-C reaches only us, and we stop the server in order below.
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(server, port, log_path)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_healthy(server: subprocess.Popen, port: int, log_path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"the server was not healthy after {timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}")


# ----------------------------------------------------------------------------- one browser tab


class Tab:
    """One browser tab: sends reruns, and keeps the element tree of the last script run."""

    def __init__(self, ws):
        self.ws = ws
        self.page_hash = ""  # the frontend sends the page it shows; empty on the first run
        self.tree: dict[tuple[int, ...], Element | Block] = {}  # by delta path
        self.crashes: list[str] = []  # runs that ended in a compile error, which shows no element

    async def rerun(self, widget_states: WidgetStates | None = None) -> float:
        """Seconds from sending the rerun to the end of the run (chain, if it calls st.rerun)."""
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = self.page_hash
        if widget_states is not None:
            msg.rerun_script.widget_states.CopyFrom(widget_states)
        started = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        while not await self.receive():
            pass
        return time.perf_counter() - started

    async def receive(self) -> bool:
        """Apply one ForwardMsg to the tree; True when it ends a run that no other run follows."""
        msg = ForwardMsg()
        msg.ParseFromString(await asyncio.wait_for(self.ws.recv(), REPLY_TIMEOUT_S))
        kind = msg.WhichOneof("type")
        if kind == "new_session":  # a run starts; we send no cached hashes, so it re-sends every element
            self.tree.clear()
            self.crashes.clear()
            self.page_hash = msg.new_session.page_script_hash
        elif kind == "navigation":
            self.page_hash = msg.navigation.page_script_hash
        elif kind == "delta" and msg.delta.WhichOneof("type") in ("new_element", "add_block"):
            delta = msg.delta.new_element if msg.delta.HasField("new_element") else msg.delta.add_block
            self.tree[tuple(msg.metadata.delta_path)] = delta
        elif kind == "script_finished":
            if msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                self.crashes.append("the script did not compile: see the server's output")
            return msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN
        return False

    def widgets(self, kind: str) -> list:
        """The payloads of every element of one type ("text_input", "button", "alert", ...), top to bottom."""
        return [getattr(e, kind) for _, e in sorted(self.tree.items())
                if isinstance(e, Element) and e.WhichOneof("type") == kind]

    def texts(self) -> list[str]:
        """Everything readable on the screen, for error messages and for spotting "database is locked"."""
        shown = []
        for e in self.tree.values():
            if isinstance(e, Element) and e.WhichOneof("type"):
                payload = getattr(e, e.WhichOneof("type"))
                shown += [v for a in ("label", "body", "message") if isinstance(v := getattr(payload, a, None), str) and v]
        return shown + self.crashes

    def problems(self) -> list[str]:
        """What an annotator would read as a failure: exceptions, error boxes, a locked database."""
        found = [f"exception: {x.type}: {x.message}" for x in self.widgets("exception")]
        found += [f"error: {a.body}" for a in self.widgets("alert") if a.format == Alert.ERROR]
        found += [f"crash: {c}" for c in self.crashes]
        found += [f"locked: {t[:200]}" for t in self.texts() if "database is locked" in t]
        return found

    def successes(self) -> list[str]:
        return [a.body for a in self.widgets("alert") if a.format == Alert.SUCCESS]

    async def submit_form(self, button: str, typed: dict[str, str]) -> float:
        """Type into a form's text inputs (by label) and press its submit button, like the frontend:
        the rerun carries the values of the form's text inputs and the button's trigger."""
        submit = next((b for b in self.widgets("button") if b.label == button and b.is_form_submitter), None)
        if submit is None:
            raise ScreenError(f"no form submit button {button!r} on the screen; it shows {self.texts()[:12]}")
        fields = [t for t in self.widgets("text_input") if t.form_id == submit.form_id]
        missing = set(typed) - {t.label for t in fields}
        if missing:
            raise ScreenError(f"no text input {sorted(missing)} in the form of {button!r}; it shows {self.texts()[:12]}")
        states = WidgetStates()
        for t in fields:
            states.widgets.add(id=t.id, string_value=typed.get(t.label, t.value if t.HasField("value") else t.default))
        states.widgets.add(id=submit.id, trigger_value=True)
        return await self.rerun(states)


async def log_in(tab: Tab, name: str, password: str) -> None:
    await tab.rerun()
    if any(t.label == "Admin name" for t in tab.widgets("text_input")):
        raise ScreenError("the app shows the first-admin form: the database has no admin account")
    await tab.submit_form("Log in", {"Name": name, "Password": password})
    if tab.problems() or not any(t.label == "Ranking, best first" for t in tab.widgets("text_input")):
        raise ScreenError(f"{name} is not on the annotate page after logging in: {tab.problems() or tab.texts()[:12]}")


def shown_k(tab: Tab) -> int:
    """How many completions are shown: the rank controls, else the bold letters heading each one."""
    ranks = [g for g in tab.widgets("button_group") if g.label.startswith("Rank of ")]
    letters = {m.body for m in tab.widgets("markdown") if re.fullmatch(r"\*\*[A-Z]\*\*", m.body)}
    k = len(ranks) or len(letters)
    if k < 2:
        raise ScreenError(f"cannot tell how many completions are shown; the screen shows {tab.texts()[:12]}")
    return k


def random_ranking(rng: random.Random, k: int) -> str:
    """A valid typed ranking for K letters, e.g. "C > A > D = B" (the last two tied when K > 2)."""
    letters = list(LETTERS[:k])
    rng.shuffle(letters)
    return " > ".join(letters[:-1]) + (" = " if k > 2 else " > ") + letters[-1]


# ----------------------------------------------------------------------------- one client count


@dataclass
class Client:
    name: str
    tab: Tab
    seconds: list[float] = field(default_factory=list)  # every submit's round trip
    acknowledged: int = 0
    errors: list[str] = field(default_factory=list)


async def annotate(client: Client, submits: int, pace: float, rng: random.Random) -> None:
    """Submit back to back, or at a person's pace: a first submit some time within the first `pace` seconds, then
    one every `pace` seconds give or take half (people do not click in step; in step, 64 of them make a burst)."""
    if pace:
        await asyncio.sleep(rng.uniform(0, pace))
    for i in range(submits):
        try:
            client.seconds.append(await client.tab.submit_form(
                "Submit ranking", {"Ranking, best first": random_ranking(rng, shown_k(client.tab))}))
        except (ScreenError, TimeoutError, ConnectionClosed) as error:
            client.errors += [f"{type(error).__name__}: {error}"] * (submits - i)
            print("X", end="", flush=True)
            return
        problems = client.tab.problems()
        saved = [s for s in client.tab.successes() if s.startswith("Saved")]
        if problems or not saved:
            client.errors.append("; ".join(problems) or f"no 'Saved' message; the screen shows {client.tab.texts()[:6]}")
        else:
            client.acknowledged += 1
        print("." if saved and not problems else "x", end="", flush=True)
        if pace and i < submits - 1:
            await asyncio.sleep(pace * rng.uniform(0.5, 1.5))


async def measure(port: int, db_path: Path, n: int, submits: int, pace: float) -> dict:
    """Log n annotators in, then let them all submit at once; one row of the result table."""
    names = account_names(n)
    before = stored_rankings(db_path, names)
    async with contextlib.AsyncExitStack() as stack:
        async def open_tab(name: str) -> Client:
            ws = await stack.enter_async_context(
                connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],  # as the frontend
                        max_size=None, open_timeout=60, ping_interval=None))  # a browser sends no pings either
            tab = Tab(ws)
            await log_in(tab, name, PASSWORD)
            return Client(name, tab)

        clients = await asyncio.gather(*(open_tab(name) for name in names))
        started = time.perf_counter()
        await asyncio.gather(*(annotate(c, submits, pace, random.Random(c.name)) for c in clients))
        wall_s = time.perf_counter() - started
    after = stored_rankings(db_path, names)
    stored = {c.name: after[c.name] - before[c.name] for c in clients}
    seconds = [s for c in clients for s in c.seconds]
    acknowledged = sum(c.acknowledged for c in clients)
    errors = [e for c in clients for e in c.errors]
    ms = lambda s: round(1000 * s, 1)  # noqa: E731
    return {
        "clients": n, "submits": n * submits, "acknowledged": acknowledged, "stored": sum(stored.values()),
        "lost": sum(max(0, c.acknowledged - stored[c.name]) for c in clients), "errors": len(errors),
        "p50_ms": ms(median(seconds)) if seconds else None, "p95_ms": ms(percentile(seconds, 0.95)) if seconds else None,
        "max_ms": ms(max(seconds)) if seconds else None,
        "submits_per_s": round(acknowledged / wall_s, 2), "wall_s": round(wall_s, 2),
        "error_examples": sorted(set(errors))[:3],
    }


# ----------------------------------------------------------------------------- the command


def print_table(rows: list[dict]) -> None:
    columns = ["clients", "submits", "p50_ms", "p95_ms", "max_ms", "submits_per_s", "lost", "errors"]
    print("\n" + " | ".join(f"{c:>13}" for c in columns))
    for row in rows:
        print(" | ".join(f"{row[c] if row[c] is not None else '-':>13}" for c in columns))
    for row in rows:
        for example in row["error_examples"]:
            print(f"  {row['clients']} clients, error: {example[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64], help="client counts, one run each")
    parser.add_argument("--submits-per-client", type=int, default=10)
    parser.add_argument("--pace", type=float, default=0.0, help="mean seconds each client waits between its submits (±50%%)")
    parser.add_argument("--db", help="an existing database to load (default: a seeded temporary one)")
    parser.add_argument("--port", type=int, default=8599)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the server is stopped too

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(args.db).resolve() if args.db else Path(folder) / "load.db"
        started = time.perf_counter()
        print(f"preparing {db_path} ({'seeding 10k prompts, 50k rankings' if not args.db else 'as it is'}) ...", flush=True)
        prepare_db(db_path, seed_it=not args.db, n_accounts=max(args.clients))
        print(f"  ready in {time.perf_counter() - started:.1f} s; starting the server on port {args.port}", flush=True)
        with streamlit_server(db_path, args.port, Path(folder) / "server.log"):
            for n in args.clients:
                print(f"{n:>3} clients x {args.submits_per_client} submits: ", end="", flush=True)
                row = asyncio.run(measure(args.port, db_path, n, args.submits_per_client, args.pace))
                print(f" p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, {row['submits_per_s']} submits/s,"
                      f" {row['errors']} errors, {row['lost']} lost", flush=True)
                rows.append(row)
    print_table(rows)
    save("annotate_load", {"database": args.db or "seeded: 10,000 prompts, K=4, 50,000 rankings, 100 annotators",
                           "submits_per_client": args.submits_per_client, "pace_s": args.pace, "results": rows})


if __name__ == "__main__":
    main()
