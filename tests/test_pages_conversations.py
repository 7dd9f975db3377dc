"""AppTest of the conversation options on the admin Import and Export screens."""

import pytest

from data import annotation, importing, jobs
from data.store import open_db
from tests.test_pages import start

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "A joke?"}]


@pytest.fixture
def chat_db(app_db):
    importing.import_completions(app_db, [importing.CompletionsRow("", [importing.NewCompletion("Knock knock."),
                                                                        importing.NewCompletion("No.")], CHAT)], "chats")
    item_id = app_db.execute("SELECT MAX(id) FROM items").fetchone()[0]
    annotation.submit_ranking(app_db, item_id, annotation.annotator_id(app_db, "alice"), [[0], [1]], [0, 1])
    return app_db


def test_the_export_screen_shows_conversational_pairs_and_writes_the_chosen_format(chat_db, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda db_path, kind, args, actor=None: started.append(args) or jobs.create_job(open_db(db_path), kind, args, actor=actor))
    at = start("pages/operate/export.py")
    assert not at.exception
    assert list(at.dataframe[0].value["prompt"].iloc[0]) == CHAT  # auto: a prompt is a conversation
    next(r for r in at.radio if r.label == "Prompts as messages").set_value("no").run()
    assert at.dataframe[0].value["prompt"].iloc[0] == "Human: Hi\n\nAssistant: Hello!\n\nHuman: A joke?"
    next(b for b in at.button if b.label.startswith("Write to a file")).click().run()
    assert [args["conversational"] for args in started] == ["no"]


def test_the_import_screen_names_every_preference_format_hh_rlhf_among_them(app_db):
    from data import formats

    at = start("pages/data/import.py")
    assert not at.exception
    listed = " ".join(c.value for c in at.caption)
    assert all(f"`{name}`" in listed for name in formats.FORMATS) and "HH-RLHF" in listed
