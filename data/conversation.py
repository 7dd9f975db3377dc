"""Conversations as prompts: the messages before the assistant turn that annotators rank.

A prompt is either plain text (one user turn) or a list of `{"role", "content"}` messages
(system first if any, then user and assistant turns, ending with a user turn). The store keeps
the messages as JSON beside a transcript in `prompts.text`, so code that only needs text
(uniqueness in a set, the reward model's input, search) reads one string either way.
"""

import json

ROLES = ("system", "user", "assistant")
TRANSCRIPT_LABELS = {"system": "System", "user": "Human", "assistant": "Assistant"}  # HH-RLHF's labels


def as_messages(text: str, messages_json: str | None = None) -> list[dict]:
    """The prompt as messages: the stored conversation, or one user turn holding the text.

    >>> as_messages("Hi")
    [{'role': 'user', 'content': 'Hi'}]
    """
    if messages_json:
        return json.loads(messages_json)
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
