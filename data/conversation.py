"""Conversations as prompts: the messages before the assistant turn that annotators rank.

A prompt is either plain text (one user turn) or a list of `{"role", "content"}` messages
(system first if any, then user and assistant turns, ending with a user turn). The store keeps
the messages as JSON beside a transcript in `prompts.text`, so code that only needs text
(uniqueness in a set, the reward model's input, search) reads one string either way.
"""

import json
import os
import re

ROLES = ("system", "user", "assistant")
TRANSCRIPT_LABELS = {"system": "System", "user": "Human", "assistant": "Assistant"}  # HH-RLHF's labels


def as_messages(text: str, messages_json: str | None = None) -> list[dict]:
    """The prompt as messages: the stored conversation, or one user turn holding the text.

    A stored conversation that is no longer valid (a corrupted row, a role such as "tool") is shown as its text, in
    one user turn, so the item can still be read, ranked or skipped.

    >>> as_messages("Hi")
    [{'role': 'user', 'content': 'Hi'}]
    >>> as_messages("Human: Hi", '[{"role": "tool", "content": "x"}]')
    [{'role': 'user', 'content': 'Human: Hi'}]
    """
    if messages_json:
        try:
            return validate_messages(json.loads(messages_json))
        except (ValueError, TypeError, RecursionError):  # BadConversation is a ValueError
            pass
    return [{"role": "user", "content": text}]


def is_conversation(messages: list[dict]) -> bool:
    """More than the single user turn a plain prompt is."""
    return not (len(messages) == 1 and messages[0]["role"] == "user")


def transcript(messages: list[dict]) -> str:
    """The prompt's text: a plain prompt's own text, a conversation as an HH-RLHF-style transcript.

    >>> transcript([{"role": "user", "content": "Hi"}])
    'Hi'
    >>> transcript([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Joke?"}])
    'Human: Hi\\n\\nAssistant: Hello!\\n\\nHuman: Joke?'
    """
    if not is_conversation(messages):
        return messages[0]["content"]
    return "\n\n".join(f"{TRANSCRIPT_LABELS[m['role']]}: {m['content']}" for m in messages)


class BadConversation(ValueError):
    """Messages that cannot be a prompt; the message says what to fix."""


def validate_messages(messages) -> list[dict]:
    """The messages as `{"role", "content"}` dicts, checked to be a prompt an assistant can answer.

    Roles are system, user and assistant; a system message only comes first; after it user and
    assistant turns alternate, starting and ending with a user turn.

    >>> validate_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    >>> try:
    ...     validate_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    ... except BadConversation as error:
    ...     print(error)
    the conversation must end with the user turn to answer, it ends with an assistant turn: drop that last message
    """
    if not isinstance(messages, list) or not messages:
        raise BadConversation("'messages' must be a non-empty list of {\"role\", \"content\"} objects")
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadConversation(f"message {i} needs a 'role' of {', '.join(ROLES)}, got {m!r}"[:300])
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            raise BadConversation(f"message {i} ({m['role']}) needs a non-empty 'content' string")
    first = 1 if messages[0]["role"] == "system" else 0
    for i, m in enumerate(messages[first:]):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise BadConversation(f"message {first + i + 1} is {m['role']!r} where a {expected!r} turn belongs: "
                                  "a system message may only come first, then user and assistant turns alternate")
    if messages[-1]["role"] != "user":
        raise BadConversation("the conversation must end with the user turn to answer, it ends with an "
                              f"{messages[-1]['role']} turn: " + ("drop that last message" if messages[-1]["role"] == "assistant"
                                                                  else "add the user turn"))
    return [{"role": m["role"], "content": m["content"]} for m in messages]


HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant|System):")
HH_ROLES = {label: role for role, label in TRANSCRIPT_LABELS.items()}


def is_hh_transcript(text: str) -> bool:
    """Whether text reads as an HH-RLHF dialogue: it opens with a Human turn and has an Assistant turn.

    >>> is_hh_transcript("\\n\\nHuman: Hi\\n\\nAssistant: Hello"), is_hh_transcript("Human: who said 'Assistant: no'?")
    (True, False)
    """
    return text.lstrip().startswith("Human:") and "\n\nAssistant:" in text


def parse_hh_transcript(text: str) -> list[dict]:
    """The messages of an HH-RLHF style transcript ("\\n\\nHuman: ...\\n\\nAssistant: ..."), contents stripped.

    An empty last Assistant turn (the cue a prompt ends with) is dropped; the inverse of `transcript`.

    Two turns of one role in a row are one turn whose text holds the second label, so `transcript` gives the text back.

    >>> parse_hh_transcript("\\n\\nHuman: Hi\\n\\nAssistant: Hello!\\n\\nHuman: A joke?\\n\\nAssistant:")
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'}, {'role': 'user', 'content': 'A joke?'}]
    """
    parts = HH_TURN.split(text.strip())
    if parts[0].strip():
        raise BadConversation(f"an HH transcript starts with 'Human:' (or 'System:'), this one with {parts[0][:40]!r}")
    messages = []
    for label, content in zip(parts[1::2], parts[2::2]):
        if messages and messages[-1]["role"] == HH_ROLES[label]:  # a turn quoting "\n\nAssistant:" (HH-RLHF has some)
            messages[-1]["content"] += f"\n\n{label}: {content.strip()}"
        else:
            messages.append({"role": HH_ROLES[label], "content": content.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def split_hh_dialogue(text: str) -> tuple[list[dict], str]:
    """A full HH dialogue as (the prompt: messages up to the last user turn, the final assistant reply).

    >>> split_hh_dialogue("\\n\\nHuman: Hi\\n\\nAssistant: Hello!\\n\\nHuman: A joke?\\n\\nAssistant: Knock knock.")
    ([{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'}, {'role': 'user', 'content': 'A joke?'}], 'Knock knock.')
    """
    cut = text.rfind("\n\nAssistant:")
    if cut < 0:
        raise BadConversation("an HH dialogue ends with an '\\n\\nAssistant:' reply; this one has none")
    return parse_hh_transcript(text[:cut]), text[cut + len("\n\nAssistant:"):].strip()


def split_hh_pair(chosen: str, rejected: str) -> tuple[list[dict], str, str]:
    """(the shared prompt messages, chosen reply, rejected reply) of an HH-RLHF preference pair.

    The prompt ends at the last "\\n\\nAssistant:" the two dialogues share, so a reply that itself
    holds "\\n\\nAssistant:" stays whole (a few HH-RLHF replies do).

    >>> split_hh_pair("Human: Hi\\n\\nAssistant: Hello\\n\\nAssistant: again", "Human: Hi\\n\\nAssistant: Go away")
    ([{'role': 'user', 'content': 'Hi'}], 'Hello\\n\\nAssistant: again', 'Go away')
    """
    shared = os.path.commonprefix([chosen, rejected])
    cut = shared.rfind("\n\nAssistant:")
    if cut < 0:
        raise BadConversation("chosen and rejected must be the same dialogue up to a final '\\n\\nAssistant:' reply each")
    start = cut + len("\n\nAssistant:")
    return parse_hh_transcript(chosen[:cut]), chosen[start:].strip(), rejected[start:].strip()


def untemplated(messages: list[dict]) -> str:
    """The model input for a tokenizer without a chat template: a plain prompt's text, or the transcript cueing the reply.

    >>> untemplated([{"role": "user", "content": "Hi"}]), untemplated([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    ('Hi', 'System: Be brief.\\n\\nHuman: Hi\\n\\nAssistant:')
    """
    return transcript(messages) + ("\n\nAssistant:" if is_conversation(messages) else "")
