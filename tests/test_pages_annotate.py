"""The annotate screen under AppTest: conversations, guidelines, layout, and unannounced repeats."""

import pytest

from data import accounts, annotation, builtin, guidelines, items
from data.store import open_db
from tests.test_pages import button, start, unescaped, untrusted_shown, untrusted_text

CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name a prime number."},
    {"role": "assistant", "content": "Seven."},
    {"role": "user", "content": "And an even one?"},
]
REPLIES = ["Two.", "Two, the only even prime.", "Four.", "There is none."]


@pytest.fixture
def chat_db(db_path, monkeypatch):
    """A store whose first item (served first) is a conversation, then the built-in prompts."""
    monkeypatch.setenv("RLHF_DB", str(db_path))
    db = open_db(db_path)
    items.ensure_prompt_set(db, "chat")
    prompt_id, _ = items.add_prompt(db, "chat", CONVERSATION)
    items.add_item(db, prompt_id, [items.NewCompletion(t) for t in REPLIES])
    db.conn.commit()
    builtin.init_db(db)
    accounts.create_user(db, "admin", "admin-password", role="admin")
    accounts.create_user(db, "alice", "alice-password")
    return db


def typed_key(at) -> str:
    return next(k for k in at.session_state if str(k).endswith("-typed"))


def test_a_conversation_shows_as_chat_turns_and_the_completions_as_candidate_replies(chat_db):
    at = start(user="alice")
    assert [m.name for m in at.chat_message] == ["system", "user", "assistant", "user"]
    assert untrusted_text(at.chat_message[-1]) == ["And an even one?"]
    assert [h.value for h in at.subheader] == ["Conversation", "4 candidate replies"]


def test_long_earlier_turns_start_collapsed_and_the_last_user_turn_stays_in_view(db_path, monkeypatch):
    monkeypatch.setenv("RLHF_DB", str(db_path))
    db = open_db(db_path)
    items.ensure_prompt_set(db, "chat")
    long_turns = [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "reply " * 100},
                  {"role": "user", "content": "So which is it?"}]
    prompt_id, _ = items.add_prompt(db, "chat", long_turns)
    items.add_item(db, prompt_id, [items.NewCompletion(t) for t in REPLIES[:2]])
    db.conn.commit()
    accounts.create_user(db, "alice", "alice-password")
    at = start(user="alice")
    [earlier] = [e for e in at.expander if e.label.startswith("Earlier in the conversation")]
    assert "2 turns, 200 words" in earlier.label and len(earlier.chat_message) == 2
    assert untrusted_text(at.main.chat_message[-1]) == ["So which is it?"]


def guidelines_shown(at):
    [shown] = [e for e in at.expander if e.label.startswith("Guidelines")]
    return shown


def test_guidelines_open_on_first_view_collapse_after_and_the_ranking_records_their_version(chat_db):
    admin = accounts.active_user(chat_db, "admin")
    guidelines.save_guidelines(chat_db, "chat", "Prefer **correct** answers; then the shorter one.", admin)
    at = start(user="alice")
    assert guidelines_shown(at).label == "Guidelines for this set (version 1)" and guidelines_shown(at).proto.expanded
    assert "Prefer <strong>correct</strong> answers" in untrusted_shown(guidelines_shown(at))[0]
    at.run()
    assert not guidelines_shown(at).proto.expanded  # seen: one click away, out of the way

    guidelines.save_guidelines(chat_db, "chat", "Prefer correct answers; ties are fine.", admin)
    at.run()  # a new version is new to this session, so it opens again
    assert guidelines_shown(at).label.endswith("(version 2)") and guidelines_shown(at).proto.expanded
    # and says what changed since version 1 (a walk found nothing to tell the new text from the old)
    assert any(c.value.startswith("What changed since version 1") for c in guidelines_shown(at).caption)
    [changes] = [h.proto.body for h in guidelines_shown(at).get("html") if "untrusted" not in h.proto.body]
    assert "<ins" in changes and "fine.</ins>" in changes and "<del" in changes and "one.</del>" in changes
    at.text_input(key=typed_key(at)).input("B > A > C = D")
    button(at, "Submit ranking").click().run()
    assert "Saved: B > A > C = D" in unescaped(at.success[0])
    assert chat_db.execute("SELECT guideline_version FROM rankings").fetchone() == (2,)
    assert not [e for e in at.expander if e.label.startswith("Guidelines")]  # the built-in set has none


def test_completions_sit_side_by_side_in_a_2x2_grid_and_stack_on_request(chat_db):
    def card_columns():
        return [len(c.segmented_control) for c in at.columns if c.segmented_control]

    at = start(user="alice")
    assert card_columns() == [1, 1, 1, 1]  # two rows of two columns, each completion with its rank control
    button(at, "Stacked view").click().run()
    assert not at.exception and card_columns() == [] and len(at.segmented_control) == 4
    button(at, "Side by side").click().run()
    assert card_columns() == [1, 1, 1, 1]


def test_ranks_given_on_the_cards_with_a_tie_are_saved(chat_db):
    at = start(user="alice")
    for control, rank in zip(at.segmented_control, [2, 1, 2, 3]):
        control.set_value(rank)
    button(at, "Submit ranking").click().run()
    assert "Saved: B > A = C > D" in unescaped(at.success[0])


def test_a_repeat_is_served_unannounced_in_a_new_order_and_stored_apart(chat_db):
    alice = accounts.active_user(chat_db, "alice")
    annotation.set_repeat_settings(chat_db, "builtin", 0.5, 1)
    at = start(user="alice")
    for _ in range(30):
        held = chat_db.execute("SELECT repeat_of FROM reservations WHERE annotator_id = ?", [alice.id]).fetchone()
        if held and held[0]:
            break
        at.text_input(key=typed_key(at)).input("A > B > C > D")
        button(at, "Submit ranking").click().run()
        assert not at.exception
    else:
        pytest.fail("no repeat served in 30 rankings at a repeat share of 50%")
    first = chat_db.execute("SELECT id, item_id, display_order FROM rankings WHERE id = ?", [held[0]]).fetchone()
    rankings_before = chat_db.execute("SELECT COUNT(*), (SELECT COUNT(*) FROM comparisons) FROM rankings").fetchone()
    caption = at.caption[0].value
    at.text_input(key=typed_key(at)).input("A > B > C > D")
    button(at, "Submit ranking").click().run()
    assert "Saved: A > B > C > D" in unescaped(at.success[0])
    [repeat] = chat_db.query("SELECT ranking_id, item_id, display_order FROM repeat_rankings")
    assert (repeat["ranking_id"], repeat["item_id"]) == (first[0], first[1])
    assert repeat["display_order"] != first[2]  # shown in another order than the first time
    assert chat_db.execute("SELECT COUNT(*), (SELECT COUNT(*) FROM comparisons) FROM rankings").fetchone() == rankings_before
    ranked = lambda text: int(text.split("·")[1].split()[0])  # noqa: E731  "… · 12 ranked, 28 left"
    assert ranked(at.caption[0].value) == ranked(caption) + 1  # counted like any ranking: nothing gives a repeat away
    assert not any("repeat" in str(key) for key in at.session_state)  # widget keys reach the page's DOM


def test_an_empty_answer_is_shown_as_such_and_ranked_like_any_other(db_path, monkeypatch):
    monkeypatch.setenv("RLHF_DB", str(db_path))
    db = open_db(db_path)
    items.ensure_prompt_set(db, "terse")
    prompt_id, _ = items.add_prompt(db, "terse", "Say something.")
    items.add_item(db, prompt_id, [items.NewCompletion("Something."), items.NewCompletion("  ")])
    db.conn.commit()
    accounts.create_user(db, "alice", "alice-password")
    at = start(user="alice")
    assert sum("(empty answer)" in m.value for m in at.markdown) == 1
    at.text_input(key=typed_key(at)).input("A > B")
    button(at, "Submit ranking").click().run()
    assert db.execute("SELECT groups FROM rankings").fetchone()[0] is not None


def test_a_corrupted_conversation_row_is_shown_as_text_and_can_be_skipped(chat_db):
    """Finding 16 of the third trust pass: a stored message with role 'tool' blocked every annotator it was served to."""
    chat_db.execute("""UPDATE prompts SET messages = '[{"role": "tool", "content": "x"}, {"role": "user", "content": "y"}]'
                       WHERE prompt_set = 'chat'""")
    chat_db.conn.commit()
    at = start(user="alice")
    assert not at.exception and not at.error
    button(at, "Skip").click().run()
    assert chat_db.execute("SELECT skipped FROM rankings").fetchone() == (1,)


def test_nothing_left_is_never_shown_beside_a_count_of_items_left(app_db):
    """The count is kept up to 30 s (it visits every open item): it said "2 left" beside "Nothing left to rank for
    you" once the last items went to others (walk, 2026-12-07)."""
    from data import prompt_sets

    accounts.create_user(app_db, "alice", "password-123")
    at = start(user="alice")
    assert any(", 40 left" in unescaped(c) for c in at.caption)
    prompt_sets.configure(app_db, items.BUILTIN_SET, status="paused", by="test")  # nothing is served to her now
    at.run()
    assert any("Nothing left to rank for you" in unescaped(s) for s in at.success)
    assert any(unescaped(c).endswith(", 0 left") for c in at.caption)
