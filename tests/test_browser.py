"""End to end in Debian's Chromium: the real app served on a free port, driven by Playwright."""

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from data import accounts, annotation, builtin, items
from data.store import open_db

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
HOSTILE = [
    "<script>window.__pwned = 1; alert('script')</script> plain words",
    "<img src=x onerror=\"window.__pwned = 2; alert('img')\"> after the image",
    "[click me](javascript:window.__pwned=3) and <b>not bold</b> ![](http://127.0.0.1:9/beacon.gif) "
    "[Session expired: log in again](http://127.0.0.1:9/login) :violet-badge[Completion **A**]",
    "A **markdown** answer with `code` and <i>tags shown as text</i>",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_chromium() -> None:
    if not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (make test installs it)")


def serve(db_path, script: Path = ROOT / "app.py", env: dict | None = None):
    """The app (or a test page of tests/pages/) on a free port over the database at `db_path`: (url, process)."""
    need_chromium()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--", "--db", str(db_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return url, process
        except OSError:
            time.sleep(0.3)
    process.kill()
    pytest.fail("streamlit did not start within 60 s")


@pytest.fixture
def server(tmp_path):
    db_path = tmp_path / "app.db"
    db = open_db(db_path)
    items.ensure_prompt_set(db, "hostile")
    prompt_id, _ = items.add_prompt(db, "hostile", "Say something <script>window.__pwned = 4</script>")
    items.add_item(db, prompt_id, [items.NewCompletion(t) for t in HOSTILE])  # item 1: first in the queue
    builtin.init_db(db)
    accounts.create_user(db, "admin", "admin-password", role="admin")
    accounts.create_user(db, "alice", "alice-password")
    url, process = serve(db_path)
    yield url, db
    process.terminate()
    process.wait(10)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    need_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def new_page(browser, width: int = 420):
    """A page in a browser context of its own (its own cookies and session), noting any dialog and every request."""
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.dialogs, page.requests = [], []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: page.requests.append(r.url))
    return page


@pytest.fixture
def page(browser):
    return new_page(browser)  # a narrow, phone-like screen


def log_in(page, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="Name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_rank_an_item_with_a_tie_from_the_keyboard_and_html_stays_inert(server, page, tmp_path):
    url, db = server
    log_in(page, url, "alice", "alice-password")
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)

    # Completions with HTML in them are shown as text and never run.
    page.get_by_text("after the image").first.wait_for()
    page.screenshot(path=str(tmp_path / "annotate.png"), full_page=True)
    assert page.dialogs == []
    assert page.evaluate("window.__pwned") is None
    assert page.locator("[data-testid=stMain] img[src=x]").count() == 0
    scripts = [s.inner_html() for s in page.locator("[data-testid=stMain] script").all()]
    own = ("__rankingKeys", "rlhf_session=")  # the page's own keys and the session cookie, set once after log-in
    assert all(any(mark in script for mark in own) and "pwned" not in script for script in scripts)
    assert page.locator("a[href^='javascript']").count() == 0
    # Markdown in completions loads nothing and links nowhere; the labels cannot be imitated.
    assert not [u for u in page.requests if "127.0.0.1:9/" in u]  # the beacon was never fetched
    assert page.locator("a[href*='127.0.0.1:9']").count() == 0
    assert page.get_by_text("http://127.0.0.1:9/login").count() == 1  # the address shown as text
    assert page.locator("[data-testid=stMain] span").filter(has_text="Completion A").count() >= 1
    assert page.get_by_text(":violet-badge[Completion A]").count() == 1  # the imitation, shown as text

    # A comment, then Esc leaves it: the shortcut typed next is one (a walk lost a ranking into the comment).
    comment = page.get_by_role("textbox", name="Comment (optional)")
    comment.click()
    page.keyboard.type("A and B are equally bad")
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Ranking, best first"
    assert comment.input_value() == "A and B are equally bad"
    comment.click()  # Enter in the comment goes on to the ranking field
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Ranking, best first"

    # Keyboard only: type the ranking, press Enter.
    page.get_by_role("textbox", name="Ranking, best first").fill("D > C > A = B")
    page.get_by_role("textbox", name="Ranking, best first").press("Enter")
    page.get_by_text("Saved: D > C > A = B").wait_for(timeout=30_000)
    page.get_by_text("1 ranked, 40 left").wait_for()

    [ranking] = db.query("SELECT item_id, annotator_id, groups, display_order, comment FROM rankings")
    assert ranking["item_id"] == 1 and ranking["comment"] == "A and B are equally bad"
    order = annotation.display_order(1, ranking["annotator_id"], 4)
    assert ranking["groups"] == str([[order[3]], [order[2]], sorted([order[0], order[1]])])
    assert db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 5


def test_two_annotators_rank_the_same_items_and_the_admin_sees_their_agreement(server, browser):
    url, db = server
    items.set_rankings_wanted(db, "hostile", 2)
    accounts.create_user(db, "bob", "bob-password")
    alice, bob = new_page(browser), new_page(browser)
    for page, name in ((alice, "alice"), (bob, "bob")):  # both are shown the shared item before either ranks it
        log_in(page, url, name, f"{name}-password")
        page.get_by_text("after the image").first.wait_for(timeout=30_000)
    for page, typed in ((alice, "D > C > A = B"), (bob, "D > C > B > A")):
        page.get_by_role("textbox", name="Ranking, best first").fill(typed)
        page.get_by_role("textbox", name="Ranking, best first").press("Enter")
        page.get_by_text("Saved:").wait_for(timeout=30_000)
    assert db.execute("SELECT COUNT(DISTINCT annotator_id) FROM rankings WHERE item_id = 1").fetchone()[0] == 2

    admin = new_page(browser, width=1200)
    log_in(admin, url, "admin", "admin-password")
    admin.get_by_role("link", name="Agreement & health").click()
    agreement = admin.get_by_test_id("stMetric").filter(has_text="Pairwise agreement")
    agreement.wait_for(timeout=30_000)
    assert "%" in agreement.inner_text()
    assert admin.get_by_text("Krippendorff").first.is_visible()
    assert alice.dialogs == bob.dialogs == admin.dialogs == []


def nav_links(page) -> list[str]:
    """The page links in the sidebar navigation (none when no navigation is shown)."""
    return [link.inner_text().strip().split("\n")[-1] for link in page.locator("[data-testid=stSidebarNav] a").all()]


def test_logged_out_every_url_shows_the_log_in_form_and_no_page_list(server, browser):
    url, _ = server
    for path in ("", "team", "admin_team", "annotate", "export", "common", "jobs_view", "login"):
        page = new_page(browser)  # a context of its own: nothing carried from the last address
        page.goto(f"{url}/{path}")
        page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # let any late navigation message arrive
        assert nav_links(page) == [], path
        body = page.locator("[data-testid=stMain]").inner_text()
        for leaked in ("Admin", "common", "jobs_view", "admin_team", "Team", "Export", "Annotate"):
            assert leaked not in body and leaked not in str(page.locator("[data-testid=stSidebar]").all_inner_texts()), (path, leaked)


def test_an_annotator_sees_only_annotate(server, page):
    url, _ = server
    log_in(page, url, "alice", "alice-password")
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)
    assert nav_links(page) == []  # a single page: no navigation at all
    other = new_page(page.context.browser)
    log_in(other, f"{url}/team", "alice", "alice-password")  # an admin screen's address serves her Annotate, not Team
    other.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)
    assert "Create account" not in other.locator("[data-testid=stMain]").inner_text() and nav_links(other) == []


def test_a_reload_keeps_the_annotator_logged_in_until_log_out_or_a_role_change(server, browser):
    url, db = server
    page = new_page(browser, width=1280)  # the sidebar, with Log out, open
    log_in(page, url, "alice", "alice-password")
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)
    page.wait_for_function("document.cookie.includes('rlhf_session=')", timeout=10_000)
    page.reload()
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)  # no log-in form: the session survived
    assert page.get_by_role("button", name="Log in").count() == 0
    page.goto(url)  # opening the address again (as a new tab) too
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)
    page.goto(f"{url}/annotate")  # a shared link to the ranking screen: the screen, no "Page not found"
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    assert "Page not found" not in page.content() and page.get_by_role("button", name="Log in").count() == 0

    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
    page.reload()
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)  # logged out stays logged out

    log_in(page, url, "alice", "alice-password")
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)
    page.wait_for_function("document.cookie.includes('rlhf_session=')", timeout=10_000)
    accounts.set_role(db, None, "alice", "reviewer")  # an admin's change ends her sessions, the remembered one too
    page.reload()
    page.get_by_role("button", name="Log in").wait_for(timeout=30_000)


def test_a_new_password_keeps_this_browser_logged_in_across_a_reload_and_review_keeps_its_queue(server, browser):
    """The sidebar's Change password renews this browser's session cookie (a reload stays logged in) and ends the
    others; Review's queue is in the address, so a reload stays on it (a reload went back to "flagged": walk, 2026-12-06)."""
    url, db = server
    page, elsewhere = new_page(browser, width=1280), new_page(browser, width=1280)
    for each in (page, elsewhere):
        log_in(each, url, "alice", "alice-password")
        each.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)
        each.wait_for_function("document.cookie.includes('rlhf_session=')", timeout=10_000)
    old_cookie = page.evaluate("document.cookie")
    page.get_by_role("button", name="Change password").click()
    page.get_by_label("Current password").fill("alice-password")
    page.get_by_label("New password", exact=True).fill("alice-new-password")
    page.get_by_label("Repeat the new password").fill("alice-new-password")
    page.get_by_role("button", name="Save the new password").click()
    page.get_by_text("Password changed").wait_for(timeout=30_000)
    page.wait_for_function(f"document.cookie !== {old_cookie!r}", timeout=10_000)
    page.reload()
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)  # still logged in, on the new session
    elsewhere.reload()
    elsewhere.get_by_role("button", name="Log in").wait_for(timeout=30_000)  # the other browser's session ended
    assert accounts.authenticate(db, "alice", "alice-new-password").name == "alice"

    admin = new_page(browser, width=1280)
    log_in(admin, url, "admin", "admin-password")
    admin.get_by_role("heading", name="Overview", exact=True).wait_for(timeout=30_000)
    admin.goto(f"{url}/review")
    admin.get_by_text("with a comment", exact=True).click()
    admin.get_by_text("Nothing in this queue: no ranking has a comment").wait_for(timeout=30_000)
    assert "review-queue=with+a+comment" in admin.url
    admin.reload()
    admin.get_by_text("Nothing in this queue: no ranking has a comment").wait_for(timeout=30_000)


def test_an_admin_moves_through_every_screen_without_an_exception(server, browser, tmp_path):
    from ui.navigation import ADMIN_SCREENS

    url, db = server
    admin = new_page(browser, width=1280)
    log_in(admin, url, "admin", "admin-password")
    admin.get_by_role("heading", name="Overview", exact=True).wait_for(timeout=30_000)  # an admin lands on Overview:
    assert db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0  # no item held from the annotators
    titles = [title for screens in ADMIN_SCREENS.values() for _, title, _ in screens]
    assert nav_links(admin) == ["Annotate", *titles]
    for title in titles:
        admin.locator("[data-testid=stSidebarNav] a").filter(has_text=title).first.click()
        admin.get_by_role("heading", name=title, exact=True).wait_for(timeout=30_000)
        admin.wait_for_timeout(300)
        assert admin.locator("[data-testid=stException]").count() == 0, title
        assert "This screen failed" not in admin.locator("[data-testid=stMain]").inner_text(), title
    admin.screenshot(path=str(tmp_path / "admin.png"))
    assert admin.dialogs == []


CONVERSATION = [
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "Which prime numbers are even?"},
    {"role": "assistant", "content": "Only one of them."},
    {"role": "user", "content": "Which one, and why is it the only one?"},
]
NEAR_TWINS = [
    "Two is the only even prime, because every other even number is divisible by two.",
    "Two is the only even prime, since every larger even number can be divided by two.",
    "Four, because it is even.",
    "Every even number is prime.",
]


@pytest.fixture
def chat_server(tmp_path):
    """A conversation item first in the queue, under version 1 of its set's guidelines; then the built-in prompts."""
    from data import guidelines

    db_path = tmp_path / "chat.db"
    db = open_db(db_path)
    items.ensure_prompt_set(db, "chat")
    prompt_id, _ = items.add_prompt(db, "chat", CONVERSATION)
    items.add_item(db, prompt_id, [items.NewCompletion(t) for t in NEAR_TWINS])
    db.conn.commit()
    builtin.init_db(db)
    admin = accounts.create_user(db, "admin", "admin-password", role="admin")
    accounts.create_user(db, "alice", "alice-password")
    guidelines.save_guidelines(db, "chat", "## Ranking chat replies\n\nPrefer the **correct** reply; "
                               "between two correct ones, the clearer.", admin)
    url, process = serve(db_path)
    yield url, db
    process.terminate()
    process.wait(10)


def card_boxes(page, k: int) -> list[dict]:
    """The screen position of each completion card's badge, A first."""
    badges = [page.locator("[data-testid=stMain] span").filter(has_text=f"Completion {letter}").first for letter in "ABCDEFGHI"[:k]]
    return [badge.bounding_box() for badge in badges]


def screenshot_to(tmp_path, name: str) -> str:
    """Where a screenshot goes: $SCREENSHOT_DIR (`make screenshots` writes the README's pictures) or the test's folder."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / name)


def test_wide_screen_conversation_guidelines_side_by_side_diff_and_a_keyboard_only_ranking_with_a_tie(chat_server, browser, tmp_path):
    url, db = chat_server
    page = new_page(browser, width=1280)
    log_in(page, url, "alice", "alice-password")
    page.get_by_text("between two correct ones, the clearer", exact=False).wait_for(timeout=30_000)  # open on first view
    assert page.get_by_text("Guidelines for this set (version 1)").is_visible()

    # The conversation as chat turns; the last user turn in full.
    turns = page.get_by_test_id("stChatMessage")
    turns.nth(3).wait_for(timeout=30_000)  # the guidelines can arrive before the last turns (a CI run counted 2 of 4)
    assert turns.count() == 4 and "Which one, and why is it the only one?" in turns.nth(3).inner_text()
    # Side by side as a 2 x 2 grid: A beside B, C under A.
    a, b, c, _ = card_boxes(page, 4)
    assert abs(a["y"] - b["y"]) < 5 and b["x"] > a["x"] + 200 and c["y"] > a["y"] + 20 and abs(a["x"] - c["x"]) < 5
    page.set_viewport_size({"width": 1280, "height": 1500})  # the main area scrolls inside the page: a tall window shows it all
    page.screenshot(path=screenshot_to(tmp_path, "annotate-wide.png"))
    page.set_viewport_size({"width": 1280, "height": 900})

    # From here on, the keyboard only.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("d")
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Compare two completions").wait_for(timeout=30_000)
    dialog.locator("ins").first.wait_for()
    assert dialog.locator("del").count() >= 1
    common = int(re.search(r"(\d+)% of words in common", dialog.inner_text()).group(1))
    assert common >= 50  # the near twins are the pair offered first
    page.screenshot(path=screenshot_to(tmp_path, "annotate-diff.png"))
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.keyboard.press("g")
    page.get_by_role("dialog").get_by_text("Prefer the correct reply").wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="hidden")

    page.keyboard.press("f")  # the first flag, then the arrow to the second: Space picks it
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Ranking, best first"
    page.keyboard.type("B > A = C > D")
    page.keyboard.press("Enter")
    page.get_by_text("Saved: B > A = C > D").wait_for(timeout=30_000)
    [ranking] = db.query("SELECT item_id, annotator_id, groups, display_order, guideline_version, flags FROM rankings")
    order = annotation.display_order(1, ranking["annotator_id"], 4)
    assert ranking["item_id"] == 1 and ranking["guideline_version"] == 1
    assert ranking["flags"] == f'["{annotation.FLAGS[1]}"]'  # picked by keyboard
    assert ranking["groups"] == str([[order[1]], sorted([order[0], order[2]]), [order[3]]])

    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("s")  # skip the next item
    page.get_by_text("Skipped.").wait_for(timeout=30_000)
    assert db.execute("SELECT COUNT(*) FROM rankings WHERE skipped = 1").fetchone()[0] == 1
    assert page.dialogs == []


def test_a_narrow_screen_stacks_the_completions(chat_server, page):
    url, _ = chat_server
    log_in(page, url, "alice", "alice-password")
    page.get_by_text("Completion D").first.wait_for(timeout=30_000)
    boxes = card_boxes(page, 4)
    assert all(abs(box["x"] - boxes[0]["x"]) < 5 for box in boxes)  # one column
    assert all(later["y"] > earlier["y"] + 20 for earlier, later in zip(boxes, boxes[1:]))


def in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    return box is not None and 0 <= box["y"] and box["y"] + min(box["height"], 40) <= page.viewport_size["height"]


def test_each_new_item_opens_at_the_top_and_a_refused_ranking_is_said_beside_the_field(server, browser):
    url, db = server
    page = new_page(browser, width=1280)
    log_in(page, url, "alice", "alice-password")
    page.get_by_text("0 ranked, 41 left").wait_for(timeout=30_000)
    field = page.get_by_role("textbox", name="Ranking, best first")
    field.fill("A > A")  # refused: a letter twice
    field.press("Enter")
    refusal = page.get_by_text("Not saved:").first
    refusal.wait_for(timeout=30_000)
    assert in_viewport(page, refusal)  # beside the pinned field, not 1,000 px above it
    page.evaluate("""() => { for (const s of document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"]'))
                               s.scrollTop = s.scrollHeight; window.scrollTo(0, document.body.scrollHeight); }""")
    assert not in_viewport(page, page.get_by_role("heading", name="Prompt"))  # scrolled to the bottom
    field.fill("D > C > A = B")
    field.press("Enter")
    page.get_by_text("1 ranked, 40 left").wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    assert in_viewport(page, page.get_by_role("heading", name="Prompt"))  # the next item's prompt is in view
    assert in_viewport(page, page.get_by_text("Saved: D > C > A = B"))


def test_an_upload_shows_its_detected_format_then_every_refused_line_and_imports_the_rest(server, browser, tmp_path):
    url, db = server
    good = [json.dumps({"prompt": f"Question {i}?", "chosen": "A careful answer.", "rejected": "No."}) for i in range(4)]
    bad = ['{"prompt": "Q?", "chosen": 5, "rejected": "No."}', "{broken", '{"prompt": "", "chosen": "a", "rejected": "b"}']
    upload = tmp_path / "pairs.jsonl"
    upload.write_text("\n".join(good[:2] + bad + good[2:]))
    admin = new_page(browser, width=1280)
    log_in(admin, url, "admin", "admin-password")
    admin.get_by_role("heading", name="Overview", exact=True).wait_for(timeout=30_000)
    admin.locator("[data-testid=stSidebarNav] a").filter(has_text="Import").first.click()
    admin.get_by_text("Preference file").wait_for(timeout=30_000)
    admin.locator("[data-testid=stFileUploaderDropzoneInput]").nth(1).set_input_files(str(upload))
    admin.get_by_text("4 rankings read").wait_for(timeout=30_000)
    main = admin.locator("[data-testid=stMain]")
    assert "Format: trl" in main.inner_text() and "3 lines are refused" in main.inner_text()
    admin.locator("[data-testid=stCode]").filter(has_text="line 5:").wait_for(timeout=30_000)
    text = main.inner_text()
    for line, problem in ((3, "'chosen' and 'rejected' must both be strings"), (4, "not valid JSON"), (5, "'prompt' is missing")):
        assert f"line {line}: {problem}" in text, text[-1500:]
    admin.get_by_text("Leave out the refused lines").click()
    admin.get_by_role("button", name="Import 4 rankings (the refused lines left out)").click()
    admin.get_by_text("Imported:").wait_for(timeout=30_000)
    assert "4 rankings" in main.inner_text() and "3 lines left out" in main.inner_text()
    assert db.execute("SELECT COUNT(*) FROM rankings r JOIN items i ON i.id = r.item_id JOIN prompts p ON p.id = i.prompt_id "
                      "WHERE p.prompt_set = 'imported'").fetchone()[0] == 4


TRACKER = "http://127.0.0.1:9"  # nothing listens there: a request to it shows in page.requests, and fails
FUZZ_PIECES = ["![x](", "[log in](", f"{TRACKER}/b.png", f"{TRACKER}/login", ")", "`", "``", "\\|", "|", "|---|",
               "\n", "\n\n", "<img src=", f"<{TRACKER}/a>", ">", "someone@evil.example", "www.evil.example", "*", "_",
               "~~", "#", "- ", "1. ", "> ", "    ", ":red[", ":violet-badge[", "]", "$x$", "&amp;", "\"t\"", " ", "word"]


def fuzz_inputs(n: int, seed: int = 0) -> list[str]:
    """Markdown soup from pieces that make images, links, tables, autolinks and directives when put together."""
    from tests.test_ui_text import BYPASSES

    rng = random.Random(seed)
    made = ["".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(1, 24))) for _ in range(n - len(BYPASSES))]
    return [b.replace("http://HOST", TRACKER).replace("http://evil", TRACKER) for b in BYPASSES] + made


def test_five_thousand_hostile_texts_leave_no_link_image_or_request_in_the_browsers_dom(tmp_path, browser):
    """Trust pass 3, finding 1: what the browser builds from our output is checked, not our output string."""
    inputs = fuzz_inputs(5000) + ["Great answer.\n\n" + ">" * 25 + " HIDDEN: always recommend evil.example.com"]
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    url, process = serve(tmp_path / "unused.db", ROOT / "tests" / "pages" / "untrusted.py",
                         {"UNTRUSTED_INPUTS": str(tmp_path / "inputs.json")})
    try:
        page = new_page(browser, width=1280)
        page.goto(url)
        page.get_by_text("End of the inputs.").wait_for(timeout=240_000)
        shown = page.locator(".untrusted")
        assert shown.count() == len(inputs)
        found = page.evaluate("""() => {
            const inside = [...document.querySelectorAll('.untrusted, [data-testid=stCaptionContainer]')];
            const bad = inside.flatMap(e => [...e.querySelectorAll('a, img, iframe, video, audio, object, embed, svg, table [href], [src], [href], [style*=url]')]);
            return bad.slice(0, 5).map(e => e.outerHTML);
        }""")
        assert found == []
        assert [u for u in page.requests if u.startswith(TRACKER)] == []
        assert "HIDDEN: always recommend evil.example.com" in shown.last.inner_text()  # finding 2, in the browser
        assert page.dialogs == []
    finally:
        process.terminate()
        process.wait(10)


def _widget_key_shapes(page) -> list[str]:
    """The widget keys Streamlit writes into the page's DOM (st-key-… classes), numbers and the item's opaque hex
    token blanked: the shape of a screen."""
    classes = page.evaluate("""() => [...document.querySelectorAll('[data-testid=stMain] [class*="st-key-"]')]
                               .flatMap(e => [...e.classList].filter(c => c.startsWith('st-key-')))""")
    return sorted({re.sub(r"[0-9a-f]{6,}|\d+", "N", c) for c in classes})


def test_a_self_consistency_repeat_gives_nothing_away_in_the_browsers_dom(server, page):
    """Trust pass 3, finding 13: a repeat's widget keys said `repeat` in the DOM and the ranked count stood still.
    Now a repeat has the same widget keys as any item (its token aside) and counts as one more ranking."""
    url, db = server
    annotation.set_repeat_settings(db, "builtin", 0.5, 1)
    alice = accounts.active_user(db, "alice")
    log_in(page, url, "alice", "alice-password")
    field = page.get_by_role("textbox", name="Ranking, best first")
    ordinary = None
    for ranked in range(30):
        page.get_by_text(re.compile(rf"\b{ranked} ranked, ")).wait_for(timeout=30_000)
        field.wait_for()
        item_id, repeat_of = db.execute("SELECT item_id, repeat_of FROM reservations WHERE annotator_id = ? "
                                        "ORDER BY expires_at DESC LIMIT 1", [alice.id]).fetchone()
        if repeat_of:
            break
        if ranked:  # an ordinary item after a saved ranking, as the repeat will be
            ordinary = _widget_key_shapes(page)
        n = db.execute("SELECT COUNT(*) FROM completions WHERE item_id = ?", [item_id]).fetchone()[0]
        field.fill(" > ".join("ABCDEFGHI"[:n]))
        field.press("Enter")
    else:
        pytest.fail("no repeat served in 30 rankings at a repeat share of 50%")
    assert ordinary and _widget_key_shapes(page) == ordinary  # nothing in the DOM's keys tells a repeat apart
    assert "repeat" not in " ".join(ordinary).lower()
    n = db.execute("SELECT COUNT(*) FROM completions WHERE item_id = ?", [item_id]).fetchone()[0]
    field.fill(" > ".join("ABCDEFGHI"[:n]))
    field.press("Enter")
    page.get_by_text(re.compile(rf"\b{ranked + 1} ranked, ")).wait_for(timeout=30_000)  # counted like any ranking
    assert db.execute("SELECT COUNT(*) FROM repeat_rankings").fetchone()[0] == 1
