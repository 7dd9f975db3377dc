"""Streamlit AppTest runs of the real app (app.py and its navigation), on a temporary database."""

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from data import accounts, annotation, jobs
from data.store import open_db

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def start(page: str | None = None, user: str | None = "admin") -> AppTest:
    """The app as `user` (logged in), on `page`."""
    at = AppTest.from_file(APP, default_timeout=60)
    if user:
        at.session_state["user_name"] = user
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception
    return at


def annotate_as(db, name: str) -> AppTest:
    if accounts.active_user(db, name) is None:
        accounts.create_user(db, name, "password-123")
    return start(user=name)


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def shown_prompt(at) -> str:
    return at.markdown[0].value


def test_annotator_types_a_name_then_sees_an_item_with_progress(app_db):
    at = annotate_as(app_db, "alice")
    assert "0 ranked, 40 left" in at.caption[0].value
    assert [m.value for m in at.markdown if m.value in ("**A**", "**B**", "**C**", "**D**")] == ["**A**", "**B**", "**C**", "**D**"]
    assert len(at.segmented_control) == 4


def test_typed_ranking_with_a_tie_is_saved_in_stored_positions_and_the_next_item_follows(app_db):
    at = annotate_as(app_db, "alice")
    first_prompt = shown_prompt(at)
    at.text_input(key=next(k for k in at.session_state if str(k).endswith("-typed"))).input("D > C > A = B")
    button(at, "Submit ranking").click().run()
    assert not at.exception
    assert "Saved: D > C > A = B" in at.success[0].value
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
    assert "Saved: B > A = C > D" in at.success[0].value
    assert app_db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 5


def test_a_missing_rank_is_refused_with_a_message(app_db):
    at = annotate_as(app_db, "carol")
    first_prompt = shown_prompt(at)
    at.segmented_control[0].set_value(1)
    button(at, "Submit ranking").click().run()
    assert "give every completion a rank: B, C, D has none" in at.error[0].value
    assert shown_prompt(at) == first_prompt
    assert app_db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 0


def test_skip_with_a_flag_moves_on(app_db):
    at = annotate_as(app_db, "dan")
    at.pills[0].set_value(["prompt unclear"])
    button(at, "Skip").click().run()
    assert "Skipped" in at.info[0].value
    row = app_db.execute("SELECT skipped, flags FROM rankings").fetchone()
    assert row == (1, '["prompt unclear"]')
    assert "0 ranked, 39 left" in at.caption[0].value


def test_admin_page_shows_counts(app_db):
    at = start("pages/admin.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Prompts"] == "40" and metrics["Completions"] == "160"


def test_admin_imports_pasted_prompts(app_db):
    at = start("pages/admin.py")
    at.text_area[0].input("First new prompt\nSecond new prompt")
    at.button(key="FormSubmitter:import-prompts-Import prompts").click().run()
    assert not at.exception
    assert "'added': 2" in at.success[0].value
    assert app_db.execute("SELECT COUNT(*) FROM prompts WHERE prompt_set = 'default'").fetchone()[0] == 2


def test_admin_starts_a_generation_job(app_db, monkeypatch):
    started = []

    def create_only(db_path, kind, args):  # the real spawn is covered in test_data_jobs
        started.append((kind, args))
        return jobs.create_job(open_db(db_path), kind, args)

    monkeypatch.setattr(jobs, "start_job", create_only)
    at = start("pages/admin.py")
    at.slider[0].set_value(3)
    at.button(key="FormSubmitter:generate-Start generation").click().run()
    assert not at.exception
    [(kind, args)] = started
    assert kind == "generate" and args["k"] == 3 and args["prompt_set"] == "builtin"
    assert "started as job" in at.success[0].value
    assert any("Job 1" in m.value and "queued" in m.value for m in at.markdown)


def test_admin_cancels_a_running_job(app_db):
    job_id = jobs.create_job(app_db, "generate", {})
    app_db.execute("UPDATE jobs SET status = 'running', pid = ?, heartbeat_at = created_at, message = '3/40 prompts' WHERE id = ?",
                   [os.getpid(), job_id])
    app_db.conn.commit()
    at = start("pages/admin.py")
    assert at.get("progress")[0].proto.text == "3/40 prompts"
    at.button(key=f"jobs-cancel-{job_id}").click().run()
    assert app_db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]).fetchone()[0] == 1


def test_admin_exports_pairs(app_db):
    me = annotation.annotator_id(app_db, "alice")
    item = annotation.next_item(app_db, me)
    annotation.submit_ranking(app_db, item.id, me, [[0], [1], [2, 3]], [0, 1, 2, 3])
    at = start("pages/admin.py")
    assert any("5 rows" in c.value for c in at.caption)
    assert at.get("download_button")


def test_annotator_edits_a_completion_into_a_demonstration(app_db):
    at = annotate_as(app_db, "erin")
    at.selectbox(key=next(k for k in at.session_state if str(k).endswith("-demo-start"))).set_value("B")
    at.run()
    area = next(t for t in at.text_area if t.label == "Your answer")
    assert area.value  # prefilled with completion B
    area.input(area.value + " And a better ending.")
    button(at, "Save demonstration").click().run()
    assert not at.exception and "ranked above the completion it came from" in at.success[0].value
    [demo] = app_db.query("SELECT source, text, source_completion_id, implicit_ranking_id FROM demonstrations")
    assert demo["source"] == "edited" and demo["text"].endswith("And a better ending.") and demo["implicit_ranking_id"]


def test_write_demonstrations_queue(app_db):
    at = annotate_as(app_db, "fay")
    at.radio(key="task").set_value("Write demonstrations").run()
    first = shown_prompt(at)
    at.text_area[0].input("My ideal answer.")
    button(at, "Save demonstration").click().run()
    assert "Demonstration saved." in at.success[0].value
    assert shown_prompt(at) != first
    button(at, "Next prompt").click().run()
    assert app_db.execute("SELECT COUNT(*) FROM demonstrations WHERE source = 'written'").fetchone()[0] == 1


def test_admin_starts_fine_tuning(app_db, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda path, kind, args: started.append((kind, args)) or jobs.create_job(app_db, kind, args))
    at = start("pages/admin.py")
    next(n for n in at.number_input if n.label == "Epochs (at most)").set_value(2)
    at.button(key="FormSubmitter:train-sft-Start fine-tuning").click().run()
    assert not at.exception and "Fine-tuning started as job" in at.success[0].value
    [(kind, args)] = started
    assert kind == "sft" and args["epochs"] == 2


def test_admin_quality_dashboard_shows_agreement_and_biases(app_db):
    items = [annotation.next_item(app_db, annotation.annotator_id(app_db, "x")).id]
    for name, groups in (("alice", [[0], [1], [2, 3]]), ("bob", [[0], [2], [1], [3]])):
        me = annotation.annotator_id(app_db, name)
        annotation.submit_ranking(app_db, items[0], me, groups, annotation.display_order(items[0], me, 4), seconds=4.0)
    at = start("pages/admin.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairwise agreement"] == "80%" and metrics["Krippendorff's α (ordinal)"] != "–"
    assert len(at.get("vega_lite_chart")) >= 3  # per day, position bias, length bias
    table = next(d.value for d in at.dataframe if "annotator" in d.value.columns)
    assert set(table["annotator"]) == {"alice", "bob"}


def test_log_in_with_a_password(app_db):
    accounts.create_user(app_db, "gina", "a-long-password")
    at = start(user=None)
    at.text_input[0].input("gina")
    at.text_input[1].input("wrong password")
    at.button[0].click().run()
    assert "wrong name or password" in at.error[0].value
    at.text_input[1].input("a-long-password")
    at.button[0].click().run()
    assert not at.exception and "Ranking as **gina**" in at.main.caption[0].value
    assert [b.label for b in at.sidebar.button] == ["Log out"]
    at.sidebar.button[0].click().run()
    assert "user_name" not in at.session_state and not at.main.caption  # nothing of the page is served any more


def test_a_disabled_account_cannot_log_in_and_is_logged_out(app_db):
    accounts.create_user(app_db, "hal", "a-long-password")
    at = start(user="hal")
    assert "Ranking as **hal**" in at.main.caption[0].value
    accounts.set_disabled(app_db, "hal", True)
    at.run()
    assert "user_name" not in at.session_state and not at.main.caption
    at = start(user=None)
    at.text_input[0].input("hal")
    at.text_input[1].input("a-long-password")
    at.button[0].click().run()
    assert "disabled" in at.error[0].value


def test_the_first_admin_is_created_on_first_start(db_path, monkeypatch):
    monkeypatch.setenv("RLHF_DB", str(db_path))
    at = start(user=None)
    assert "No admin yet" in at.info[0].value
    for field, value in zip(at.text_input, ["root", "a-long-password", "a-long-password"]):
        field.input(value)
    at.button[0].click().run()
    assert not at.exception
    assert accounts.authenticate(open_db(db_path), "root", "a-long-password").is_admin


@pytest.mark.parametrize("user", ["ivy", None])
def test_admin_content_is_never_rendered_for_annotators_or_logged_out_sessions(app_db, user):
    if user:
        accounts.create_user(app_db, user, "a-long-password")
    at = start(user=user)
    for target in ("pages/admin.py", "pages/admin_team.py", "pages/admin_reward.py"):
        try:
            at.switch_page(target).run()
        except Exception:  # noqa: BLE001  not a page of this session's navigation at all
            continue
        rendered = [m.value for m in at.markdown] + [b.label for b in at.button] + [t.label for t in at.text_input]
        assert not any("Start" in x or "Import" in x or "Create account" in x for x in rendered), rendered
        assert not at.metric and not at.get("download_button")
    assert jobs.list_jobs(app_db) == [] and [u["name"] for u in accounts.list_users(app_db)] == ["admin"] + ([user] if user else [])


def test_single_sign_on_maps_the_e_mail_to_an_account(app_db):
    accounts.create_user(app_db, "sso@example.com", None)
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x", "client_id": "id",
                          "client_secret": "s", "server_metadata_url": "https://sso.example.com/.well-known/openid-configuration"}
    at.user = {"is_logged_in": True, "email": "sso@example.com"}
    at.run()
    assert not at.exception and "Ranking as **sso@example.com**" in at.main.caption[0].value
    stranger = AppTest.from_file(APP, default_timeout=60)
    stranger.secrets["auth"] = at.secrets["auth"]
    stranger.user = {"is_logged_in": True, "email": "stranger@example.com"}
    stranger.run()
    assert "stranger@example.com has no account here" in stranger.error[0].value


def test_admin_creates_and_disables_an_annotator(app_db):
    at = start("pages/admin.py")
    form = [t for t in at.text_input if t.form_id == "create-user"]
    form[0].input("jo")
    form[1].input("a-long-password")
    at.button(key="FormSubmitter:create-user-Create account").click().run()
    assert accounts.authenticate(app_db, "jo", "a-long-password").role == "annotator"
    next(s for s in at.selectbox if s.label == "Account").set_value("jo")
    at.button(key="FormSubmitter:change-user-Disable").click().run()
    with pytest.raises(accounts.AuthError, match="disabled"):
        accounts.authenticate(app_db, "jo", "a-long-password")


def test_admin_marks_a_gold_item_and_sets_its_rate(app_db):
    at = start("pages/admin.py")
    at.number_input(key="gold-every").set_value(5)
    next(b for b in at.button if b.label == "Save rate").click().run()
    at.text_input(key="gold-expected").input("B > A")
    at.button(key="FormSubmitter:gold-Mark as gold").click().run()
    assert not at.exception and "is gold now" in at.success[0].value
    assert app_db.execute("SELECT expected FROM gold").fetchone()[0] == "[[1], [0]]"
    assert app_db.execute("SELECT gold_every FROM prompt_sets WHERE name = 'builtin'").fetchone()[0] == 5
