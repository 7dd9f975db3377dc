"""Streamlit AppTest runs of the real app (app.py and its navigation), on a temporary database."""

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from data import annotation, jobs
from data.store import open_db

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception
    return at


def annotate_as(name: str) -> AppTest:
    at = start()
    at.text_input[0].input(name)
    at.button[0].click().run()
    assert not at.exception
    return at


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def shown_prompt(at) -> str:
    return at.markdown[0].value


def test_annotator_types_a_name_then_sees_an_item_with_progress(app_db):
    at = annotate_as("alice")
    assert "0 ranked, 40 left" in at.caption[0].value
    assert [m.value for m in at.markdown if m.value in ("**A**", "**B**", "**C**", "**D**")] == ["**A**", "**B**", "**C**", "**D**"]
    assert len(at.segmented_control) == 4


def test_typed_ranking_with_a_tie_is_saved_in_stored_positions_and_the_next_item_follows(app_db):
    at = annotate_as("alice")
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
    at = annotate_as("bob")
    for control, rank in zip(at.segmented_control, [2, 1, 2, 3]):
        control.set_value(rank)
    button(at, "Submit ranking").click().run()
    assert "Saved: B > A = C > D" in at.success[0].value
    assert app_db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 5


def test_a_missing_rank_is_refused_with_a_message(app_db):
    at = annotate_as("carol")
    first_prompt = shown_prompt(at)
    at.segmented_control[0].set_value(1)
    button(at, "Submit ranking").click().run()
    assert "give every completion a rank: B, C, D has none" in at.error[0].value
    assert shown_prompt(at) == first_prompt
    assert app_db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 0


def test_skip_with_a_flag_moves_on(app_db):
    at = annotate_as("dan")
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
    at = annotate_as("erin")
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
    at = annotate_as("fay")
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
