"""Streamlit AppTest runs of the real app (app.py and its navigation), on a temporary database."""

import os
import html
import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from data import accounts, annotation
from data.store import open_db

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def log_in_as(at: AppTest, name: str) -> None:
    """Mark the AppTest session as logged in as `name`, as the log-in form does."""
    db = open_db(os.environ["RLHF_DB"])
    row = db.execute("SELECT id, session_epoch FROM annotators WHERE name = ?", [name]).fetchone()
    at.session_state["account"] = tuple(row)


def start(page: str | None = None, user: str | None = "admin") -> AppTest:
    """The app as `user` (logged in), on `page` (a file of pages/)."""
    at = AppTest.from_file(APP, default_timeout=60)
    if user:
        log_in_as(at, user)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception
    return at


def annotate_as(db, name: str) -> AppTest:
    if accounts.active_user(db, name) is None:
        accounts.create_user(db, name, "password-123")
    return start(user=name)


def unescaped(element) -> str:
    """A message's text as shown: messages and values inside our Markdown are escaped (ui.text.inline)."""
    return re.sub(r"\\(.)", r"\1", element.value).replace("` ", "").replace(" `", "")


def untrusted_shown(node) -> list[str]:
    """The HTML of each untrusted text (a prompt, a completion, a turn) shown under `node`, in order."""
    return [h.proto.body for h in node.get("html") if 'class="untrusted' in h.proto.body]


def untrusted_text(node) -> list[str]:
    """What each untrusted text under `node` reads as, tags left out."""
    return [html.unescape(re.sub(r"<[^>]*>", "", body)).strip() for body in untrusted_shown(node)]


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def shown_prompt(at) -> str:
    return untrusted_text(at)[0]


def test_annotator_sees_an_item_with_progress(app_db):
    at = annotate_as(app_db, "alice")
    assert "0 ranked, 40 left" in at.caption[0].value
    assert [m.value for m in at.markdown if m.value.startswith(":violet-badge")] == [
        f":violet-badge[Completion **{letter}**]" for letter in "ABCD"]
    assert len(at.segmented_control) == 4


def test_going_back_to_ranking_counts_what_is_left_afresh(app_db):
    """The walk (2026-12-07): back on "Rank completions" after a look at My rankings, "3 left" where the others had
    ranked two of them meanwhile (the count is kept up to 30 s)."""
    at = annotate_as(app_db, "alice")
    assert "0 ranked, 40 left" in at.caption[0].value
    for item in [row[0] for row in app_db.execute("SELECT id FROM items ORDER BY id DESC LIMIT 2")]:
        app_db.execute("UPDATE items SET n_rankings = 99 WHERE id = ?", [item])  # finished by the others meanwhile
    app_db.conn.commit()
    at.radio(key="task").set_value("My rankings").run()
    at.radio(key="task").set_value("Rank completions").run()
    assert "0 ranked, 38 left" in at.caption[0].value


def test_typed_ranking_with_a_tie_is_saved_in_stored_positions_and_the_next_item_follows(app_db):
    at = annotate_as(app_db, "alice")
    first_prompt = shown_prompt(at)
    at.text_input(key=next(k for k in at.session_state if str(k).endswith("-typed"))).input("D > C > A = B")
    button(at, "Submit ranking").click().run()
    assert not at.exception
    assert "Saved: D > C > A = B" in unescaped(at.success[0])
    assert "1 ranked, 39 left" in at.caption[0].value
    assert shown_prompt(at) != first_prompt
    [ranking] = app_db.query("SELECT item_id, groups, display_order, annotator_id, seconds FROM rankings")
    order = annotation.display_order(ranking["item_id"], ranking["annotator_id"], 4)
    assert ranking["display_order"] == str(order).replace(" ", "").replace(",", ", ")
    d, c, a, b = order[3], order[2], order[0], order[1]
    assert ranking["groups"] == str([[d], [c], sorted([a, b])])
    assert app_db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 5


def test_clicked_ranks_with_a_tie_are_saved(app_db):
    at = annotate_as(app_db, "bob")
    for control, rank in zip(at.segmented_control, [2, 1, 2, 3]):
        control.set_value(rank)
    button(at, "Submit ranking").click().run()
    assert "Saved: B > A = C > D" in unescaped(at.success[0])
    assert app_db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 5


def test_a_missing_rank_is_refused_with_a_message(app_db):
    at = annotate_as(app_db, "carol")
    first_prompt = shown_prompt(at)
    at.segmented_control[0].set_value(1)
    button(at, "Submit ranking").click().run()
    assert "give every completion a rank: B, C and D have none" in unescaped(at.error[0])
    assert shown_prompt(at) == first_prompt
    assert app_db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 0


def test_skip_with_a_flag_moves_on(app_db):
    at = annotate_as(app_db, "dan")
    at.pills[0].set_value(["prompt unclear"])
    button(at, "Skip").click().run()
    assert "Skipped" in unescaped(at.info[0])
    row = app_db.execute("SELECT skipped, flags FROM rankings").fetchone()
    assert row == (1, '["prompt unclear"]')
    assert "0 ranked, 39 left" in at.caption[0].value


def test_a_flag_and_a_comment_sent_with_a_ranking_are_said_when_saved_and_listed_under_my_rankings(app_db):
    """A walk flagged "all are bad", read only "Saved: A = B > C", and found no flag under My rankings (2026-12-07)."""
    at = annotate_as(app_db, "fay")
    at.pills[0].set_value(["all are bad"])
    at.text_input(key=next(k for k in at.session_state if str(k).endswith("-comment"))).input("B stops mid-sentence")
    at.text_input(key=next(k for k in at.session_state if str(k).endswith("-typed"))).input("A = B > C > D")
    button(at, "Submit ranking").click().run()
    assert unescaped(at.success[0]) == "Saved: A = B > C > D, flagged “all are bad”, with your comment"
    at.radio(key="task").set_value("My rankings").run()
    row = at.dataframe[0].value.iloc[0]
    assert (row["flags"], row["comment"]) == ("all are bad", "B stops mid-sentence")


def test_annotator_edits_a_completion_into_a_demonstration(app_db):
    at = annotate_as(app_db, "erin")
    at.selectbox(key=next(k for k in at.session_state if str(k).endswith("-demo-start"))).set_value("B")
    at.run()
    area = next(t for t in at.text_area if t.label == "Your answer")
    assert area.value  # prefilled with completion B
    area.input(area.value + " And a better ending.")
    button(at, "Save demonstration").click().run()
    assert not at.exception and "ranked above the completion it came from" in unescaped(at.success[0])
    [demo] = app_db.query("SELECT source, text, source_completion_id, implicit_ranking_id FROM demonstrations")
    assert demo["source"] == "edited" and demo["text"].endswith("And a better ending.") and demo["implicit_ranking_id"]


def test_an_annotator_changes_a_ranking_under_my_rankings_until_it_is_reviewed(app_db):
    from data import review

    at = annotate_as(app_db, "gus")
    for typed in ("A > B > C > D", "B > A > C > D"):  # two items
        at.text_input(key=next(k for k in at.session_state if str(k).endswith("-typed") and not at.session_state[k])).input(typed)
        button(at, "Submit ranking").click().run()
    at.radio(key="task").set_value("My rankings").run()
    assert not at.exception and at.dataframe[0].value["your ranking"].tolist() == ["B > A > C > D", "A > B > C > D"]
    first, prompt = app_db.execute("SELECT r.id, p.text FROM rankings r JOIN items i ON i.id = r.item_id "
                                   "JOIN prompts p ON p.id = i.prompt_id ORDER BY r.id").fetchone()
    at.selectbox(key="edit-pick").set_value(first).run()  # the older one, second in the list
    at.text_input(key=f"edit-{first}").input("D > C > A = B")
    at.button(key=f"FormSubmitter:edit-{first}-form-Save the change").click().run()
    assert unescaped(at.success[0]) == f"Changed your ranking of “{prompt[:59]}…” to D > C > A = B"
    changed = app_db.execute("SELECT id FROM rankings WHERE edited_at IS NOT NULL").fetchone()[0]
    assert at.selectbox(key="edit-pick").value == changed  # the pick stays on the ranking just changed (a new row)
    assert at.dataframe[0].value["your ranking"].tolist() == ["B > A > C > D", "D > C > A = B"]
    assert app_db.execute("SELECT COUNT(*), COUNT(edited_at) FROM rankings").fetchone() == (2, 1)
    for (ranking_id,) in app_db.execute("SELECT id FROM rankings").fetchall():
        review.accept(app_db, ranking_id, by="rita")
    at.run()
    assert at.dataframe[0].value["status"].tolist() == ["accepted", "accepted"] and not at.selectbox


def test_my_rankings_says_sent_back_apart_from_rejected(app_db):
    from data import review

    at = annotate_as(app_db, "gus")
    at.text_input(key=next(k for k in at.session_state if str(k).endswith("-typed"))).input("A > B > C > D")
    button(at, "Submit ranking").click().run()
    review.send_back(app_db, app_db.execute("SELECT id FROM rankings").fetchone()[0], "read the prompt again", by="rita")
    at.radio(key="task").set_value("My rankings").run()
    shown = at.dataframe[0].value
    assert shown["status"].tolist() == ["sent back (the item wants another annotator's ranking)"]
    assert shown["reviewer's reason"].tolist() == ["read the prompt again"]
    at.radio(key="task").set_value("Rank completions").run()
    assert "1 ranked (1 of them sent back or rejected by a reviewer)" in at.caption[0].value


def test_write_demonstrations_queue(app_db):
    at = annotate_as(app_db, "fay")
    at.radio(key="task").set_value("Write demonstrations").run()
    first = shown_prompt(at)
    at.text_area[0].input("My ideal answer.")
    button(at, "Save demonstration").click().run()
    assert "Demonstration saved." in unescaped(at.success[0])
    assert shown_prompt(at) != first
    button(at, "Next prompt").click().run()
    assert app_db.execute("SELECT COUNT(*) FROM demonstrations WHERE source = 'written'").fetchone()[0] == 1


def test_write_demonstrations_shows_the_set_and_its_guidelines(app_db):
    """Writing an answer without the set's guidelines in reach (walk, 2026-12-06): they are there, as when ranking."""
    from data import guidelines

    guidelines.save_guidelines(app_db, "builtin", "Answer in two sentences at most.", accounts.active_user(app_db, "admin"))
    at = annotate_as(app_db, "fay")
    at.radio(key="task").set_value("Write demonstrations").run()
    assert any(unescaped(c) == "Prompt set builtin" for c in at.caption)
    [shown] = [e for e in at.expander if e.label == "Guidelines for this set (version 1)"]
    assert any("Answer in two sentences at most." in h.proto.body for h in shown.get("html"))




def hostile_item(db) -> None:
    """An item whose completions try to reach out and to imitate the page (served first: its set wants more rankings)."""
    from data import items

    items.ensure_prompt_set(db, "hostile", rankings_wanted=1)
    prompt_id, _ = items.add_prompt(db, "hostile", "![](http://tracker.example/p.gif) Say hi")
    texts = ["![](http://tracker.example/beacon.gif) hello", "Session expired: [log in again](http://evil.example/login)",
             ":violet-badge[Completion **A**] I am the best", "```\n[kept](as code)\n```"]
    items.add_item(db, prompt_id, [items.NewCompletion(t) for t in texts])
    db.conn.commit()


def test_completions_load_nothing_remote_link_nowhere_and_cannot_imitate_a_label(db_path, monkeypatch):
    monkeypatch.setenv("RLHF_DB", str(db_path))
    db = open_db(db_path)
    hostile_item(db)
    accounts.create_user(db, "admin", "admin-password", role="admin")
    at = start("pages/annotate/annotate.py", user="admin")  # an admin lands on Overview: Annotate is a click away
    shown = untrusted_shown(at)
    assert not any(re.search(r"<a\b|<img|href=|src=", body) for body in shown)  # nothing to load, nothing to follow
    assert any("<code>http://tracker.example/beacon.gif</code>" in body for body in shown)  # the address shown as text
    assert any("log in again (<code>http://evil.example/login</code>)" in body for body in shown)
    assert sum(m.value.startswith(":violet-badge[") for m in at.markdown) == 4  # our four labels, not a fifth
    assert any(":violet-badge[" in text for text in untrusted_text(at))  # the imitation, as text in HTML
    assert any("<pre><code>[kept](as code)\n</code></pre>" in body for body in shown)  # code stays as written


def test_a_long_write_lock_keeps_the_ranking_and_says_the_store_is_busy(app_db, monkeypatch):
    import sqlite3

    from data import store

    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.3)
    at = annotate_as(app_db, "kim")
    typed = next(k for k in at.session_state if str(k).endswith("-typed"))
    at.text_input(key=typed).input("D > C > A = B")
    blocker = sqlite3.connect(os.environ["RLHF_DB"])
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    button(at, "Submit ranking").click().run()
    assert not at.exception
    assert "store is busy" in unescaped(at.warning[0]) and "NOT saved yet" in unescaped(at.warning[0])
    assert app_db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 0
    blocker.rollback()
    button(at, "Try again").click().run()
    assert at.text_input(key=typed).value == "D > C > A = B"  # what was typed is still there
    button(at, "Submit ranking").click().run()
    assert "Saved: D > C > A = B" in unescaped(at.success[0])
    assert app_db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 1


def test_a_flag_that_keeps_an_item_out_of_training_needs_no_ranking(app_db):
    at = annotate_as(app_db, "uma")
    button(at, "Submit ranking").click().run()  # nothing ranked, nothing flagged: refused, with the way to flag
    assert "A, B, C and D have none (or, to flag all of them bad or unsafe" in unescaped(at.error[0])
    at.pills(key=next(k for k in at.session_state if str(k).endswith("-flags"))).set_value(["offensive/unsafe"]).run()
    button(at, "Submit ranking").click().run()
    assert not at.exception and "Flagged 'offensive/unsafe' without a ranking" in unescaped(at.info[0])
    assert app_db.execute("SELECT skipped, flags FROM rankings").fetchall() == [(1, '["offensive/unsafe"]')]
