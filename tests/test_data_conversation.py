import pytest

from data import annotation, items
from data.conversation import (BadConversation, as_messages, is_hh_transcript, parse_hh_transcript, split_hh_dialogue,
                               split_hh_pair, transcript, untemplated, validate_messages)

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell me a joke."}]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize("messages, problem", [
    ([], "non-empty list"),
    ("Hi", "non-empty list"),
    ([{"role": "tool", "content": "x"}], "message 1 needs a 'role' of system, user, assistant"),
    ([{"role": "user"}], "message 1 \\(user\\) needs a non-empty 'content'"),
    ([user("  ")], "message 1 \\(user\\) needs a non-empty 'content'"),
    ([user("a"), {"role": "system", "content": "late"}], "message 2 is 'system' where a 'assistant' turn belongs"),
    ([user("a"), user("b")], "message 2 is 'user' where a 'assistant' turn belongs"),
    ([assistant("a"), user("b")], "message 1 is 'assistant' where a 'user' turn belongs"),
    ([user("a"), assistant("b")], "must end with the user turn to answer.*drop that last message"),
    ([{"role": "system", "content": "s"}], "must end with the user turn.*add the user turn"),
])
def test_validation_says_what_to_fix(messages, problem):
    with pytest.raises(BadConversation, match=problem):
        validate_messages(messages)
    assert issubclass(BadConversation, ValueError)


def test_valid_messages_keep_only_role_and_content():
    assert validate_messages([*CHAT[:-1], {**CHAT[-1], "name": "x"}]) == CHAT


def test_a_transcript_parses_back_to_its_messages():
    assert parse_hh_transcript(transcript(CHAT)) == CHAT
    assert parse_hh_transcript("\n\nHuman: Hi\n\nAssistant:") == [user("Hi")]
    assert transcript(as_messages("plain")) == "plain"


def test_a_repeated_label_stays_inside_its_turn():
    text = "\n\nHuman: Hi\n\nAssistant: Hello\n\nAssistant: quoting myself\n\nHuman: ok"
    messages = parse_hh_transcript(text)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert transcript(messages) == text.strip()


@pytest.mark.parametrize("text, expected", [
    ("\n\nHuman: Hi\n\nAssistant: Hello", True),
    ("Human: Hi\n\nAssistant: Hello", True),
    ("Human: Hi", False),
    ("What did the Human: say?\n\nAssistant: x", False),
])
def test_hh_transcripts_are_recognised(text, expected):
    assert is_hh_transcript(text) == expected


def test_a_dialogue_splits_into_prompt_and_final_reply():
    messages, reply = split_hh_dialogue("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A joke?\n\nAssistant: Knock knock.")
    assert messages == [user("Hi"), assistant("Hello!"), user("A joke?")] and reply == "Knock knock."
    with pytest.raises(BadConversation, match="Assistant"):
        split_hh_dialogue("\n\nHuman: Hi")


def test_a_pair_shares_the_prompt_even_when_a_reply_quotes_the_assistant_label():
    prompt = "\n\nHuman: Isn't that drag kings?"
    chosen = prompt + "\n\nAssistant: No. Drag queens.\n\nAssistant: Human: really?"
    rejected = prompt + "\n\nAssistant: Yes."
    assert split_hh_pair(chosen, rejected) == ([user("Isn't that drag kings?")], "No. Drag queens.\n\nAssistant: Human: really?", "Yes.")
    with pytest.raises(BadConversation, match="same dialogue"):
        split_hh_pair("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: c")


def test_untemplated_input_cues_the_assistant_for_conversations_only():
    assert untemplated([user("Hi")]) == "Hi"
    assert untemplated(CHAT).endswith("Human: Tell me a joke.\n\nAssistant:")


def test_a_conversation_prompt_is_stored_with_its_messages_and_a_plain_one_as_before(db):
    items.ensure_prompt_set(db, "s")
    chat_id, new = items.add_prompt(db, "s", CHAT)
    again, new_again = items.add_prompt(db, "s", CHAT)
    plain_id, _ = items.add_prompt(db, "s", [user("just text")])
    assert new and (again, new_again) == (chat_id, False)
    rows = {r["id"]: r for r in items.prompts_of_set(db, "s")}
    assert rows[chat_id]["text"] == transcript(CHAT) and as_messages(rows[chat_id]["text"], rows[chat_id]["messages"]) == CHAT
    assert rows[plain_id] == {"id": plain_id, "text": "just text", "messages": None}
    assert items.add_prompt(db, "s", "just text") == (plain_id, False)
    with pytest.raises(BadConversation):
        items.add_prompt(db, "s", CHAT[:-1])


def test_an_item_of_a_conversation_carries_its_messages(db):
    items.ensure_prompt_set(db, "s")
    prompt_id, _ = items.add_prompt(db, "s", CHAT)
    item_id = items.add_item(db, prompt_id, [items.NewCompletion("Why?"), items.NewCompletion("No.")])
    assert annotation.get_item(db, item_id).messages == CHAT
