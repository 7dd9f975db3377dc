"""A project through the screens (issue 20): the Overview steers prompt sets; cut answers are marked for annotators."""

from data import accounts, annotation, audit, builtin, items, prompt_sets, queue
from data.store import open_db
from tests.test_pages import start, unescaped


def test_the_overview_pauses_prioritises_and_assigns_a_set(app_db):
    accounts.create_user(app_db, "alice", "alice-password")
    items.ensure_prompt_set(app_db, "mine")
    prompt_id, _ = items.add_prompt(app_db, "mine", "A prompt of my own")
    items.add_item(app_db, prompt_id, [items.NewCompletion(t) for t in ("one", "two")])
    app_db.conn.commit()
    at = start("pages/data/overview.py")
    assert not at.exception
    assert any("builtin" in m.value and "paused" in m.value for m in at.markdown)  # paused by the first own set
    bars = [p.proto.text for p in at.get("progress")]
    assert any(text.startswith("0 of 1 rankings wanted (0 of 1 items complete)") for text in bars)
    at.number_input(key="priority-mine").set_value(7)
    at.multiselect(key="assign-mine").set_value(["alice"])
    at.button(key="save-mine").click().run()
    assert not at.exception and "mine: active, priority 7, served to alice; 1 ranking per item" in unescaped(at.success[0])
    assert prompt_sets.get_set(app_db, "mine")["priority"] == 7 and prompt_sets.get_set(app_db, "mine")["assigned"] == ["alice"]
    [logged] = [e["detail"] for e in audit.recent(app_db) if e["action"] == "configure set" and e["target"] == "mine"]
    [paused] = [e for e in audit.recent(app_db) if e["action"] == "configure set" and e["target"] == "builtin"]  # the demo set's pause is in the trail too
    assert paused["who"] == "the app" and paused["detail"].startswith("status: paused, why: mine is the first set of your own")
    assert "rankings wanted: 1" in logged and "queue order: " in logged  # N and the order saved here are logged too
    at.number_input(key="n-mine").set_value(3)  # 3 rankings an item, from alice alone: saved, with a warning
    at.button(key="save-mine").click().run()
    assert not at.success and "Only 1 annotator is served this set" in unescaped(at.warning[0])
    assert "items that want 3 rankings cannot be finished" in unescaped(at.warning[0])
    assert prompt_sets.get_set(app_db, "mine")["rankings_wanted"] == 3
    at.selectbox(key="status-mine").set_value("paused")
    at.button(key="save-mine").click().run()
    assert prompt_sets.get_set(app_db, "mine")["status"] == "paused"


def test_a_completion_cut_at_the_cap_is_marked_on_its_card(db_path, monkeypatch):
    monkeypatch.setenv("RLHF_DB", str(db_path))
    db = open_db(db_path)
    items.ensure_prompt_set(db, "cut")
    prompt_id, _ = items.add_prompt(db, "cut", "Tell me a long story.")
    items.add_item(db, prompt_id, [items.NewCompletion("Once upon a time there", n_tokens=128, finish_reason="length"),
                                   items.NewCompletion("The end.", n_tokens=3, finish_reason="eos")])
    db.conn.commit()
    builtin.init_db(db)
    accounts.create_user(db, "admin", "admin-password", role="admin")
    accounts.create_user(db, "alice", "alice-password")
    at = start(user="alice")
    captions = [unescaped(c) for c in at.caption]
    assert sum("cut at 128 token cap" in c for c in captions) == 1
    assert annotation.completions_of(db, 1)[0].cut


def test_an_annotator_undoes_a_submission_from_the_annotate_screen(app_db):
    accounts.create_user(app_db, "alice", "alice-password")
    at = start(user="alice")
    assert not any(b.label == "Undo last" for b in at.button)  # nothing to take back yet
    typed = next(k for k in at.session_state if str(k).endswith("-typed"))
    at.text_input(key=typed).input("A > B > C > D")
    next(b for b in at.button if b.label == "Submit ranking").click().run()
    assert "Saved" in unescaped(at.success[0])
    me = annotation.annotator_id(app_db, "alice")
    ranked_item = app_db.execute("SELECT item_id FROM rankings WHERE annotator_id = ?", [me]).fetchone()[0]
    next(b for b in at.button if b.label == "Undo last").click().run()
    assert not at.exception and "Taken back: your ranking A > B > C > D is deleted" in unescaped(at.info[0])
    assert app_db.execute("SELECT COUNT(*) FROM rankings WHERE annotator_id = ?", [me]).fetchone()[0] == 0
    assert typed in at.session_state  # the same item is the current one again (its widgets' keys)
    assert at.text_input(key=typed).value == "A > B > C > D"  # what was taken back, to change or submit again
    assert queue.next_item(app_db, me).id == ranked_item


def test_agreement_without_overlap_says_what_to_do(app_db):
    at = start("pages/quality/agreement.py")
    assert not at.exception and any("Agreement needs overlap" in unescaped(i) for i in at.info)
