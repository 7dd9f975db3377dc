"""End to end in Debian's Chromium: the real app served on a free port, driven by Playwright."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from data import annotation, builtin, items
from data.store import open_db

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
HOSTILE = [
    "<script>window.__pwned = 1; alert('script')</script> plain words",
    "<img src=x onerror=\"window.__pwned = 2; alert('img')\"> after the image",
    "[click me](javascript:window.__pwned=3) and <b>not bold</b>",
    "A **markdown** answer with `code` and <i>tags shown as text</i>",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    if not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    db_path = tmp_path / "app.db"
    db = open_db(db_path)
    items.ensure_prompt_set(db, "hostile")
    prompt_id, _ = items.add_prompt(db, "hostile", "Say something <script>window.__pwned = 4</script>")
    items.add_item(db, prompt_id, [items.NewCompletion(t) for t in HOSTILE])  # item 1: first in the queue
    builtin.init_db(db)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--", "--db", str(db_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("streamlit did not start within 60 s")
    yield url, db
    process.terminate()
    process.wait(10)


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 420, "height": 900})  # a narrow, phone-like screen
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.dialogs = dialogs
        yield page
        browser.close()


def test_rank_an_item_with_a_tie_from_the_keyboard_and_html_stays_inert(server, page, tmp_path):
    url, db = server
    page.goto(url)
    page.get_by_role("textbox", name="Your name").fill("alice")
    page.get_by_role("button", name="Start ranking").click()
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)

    # Completions with HTML in them are shown as text and never run.
    page.get_by_text("after the image").first.wait_for()
    page.screenshot(path=str(tmp_path / "annotate.png"), full_page=True)
    assert page.dialogs == []
    assert page.evaluate("window.__pwned") is None
    assert page.locator("[data-testid=stMain] img[src=x]").count() == 0
    assert page.locator("[data-testid=stMain] script").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0

    # Keyboard only: type the ranking, press Enter.
    page.get_by_role("textbox", name="Ranking, best first").fill("D > C > A = B")
    page.get_by_role("textbox", name="Ranking, best first").press("Enter")
    page.get_by_text("Saved: D > C > A = B").wait_for(timeout=30_000)
    page.get_by_text("1 ranked, 40 left").wait_for()

    [ranking] = db.query("SELECT item_id, annotator_id, groups, display_order FROM rankings")
    assert ranking["item_id"] == 1
    order = annotation.display_order(1, ranking["annotator_id"], 4)
    assert ranking["groups"] == str([[order[3]], [order[2]], sorted([order[0], order[1]])])
    assert db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 5
