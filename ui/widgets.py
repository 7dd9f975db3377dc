"""Small pieces that several screens show."""

import streamlit as st

from data import quality
from data.conversation import is_conversation
from data.rankings import LETTERS
from ui.text import untrusted_html

AVATARS = {"system": ":material/settings:", "user": ":material/person:", "assistant": ":material/smart_toy:"}
EMPTY_ANSWER = ":gray[*(empty answer)*]"  # a model that answered nothing: ranked like any other answer
UNTRUSTED_STYLE = """<style>
.untrusted.plain { white-space: pre-wrap; }
.untrusted table { border-collapse: collapse; margin-bottom: 1rem; }
.untrusted th, .untrusted td { border: 1px solid rgba(128, 128, 128, 0.35); padding: 0.25rem 0.6rem; }
.untrusted pre { padding: 0.6rem; border-radius: 0.4rem; background: rgba(128, 128, 128, 0.12); overflow-x: auto; }
.untrusted :not(pre) > code { padding: 0.1rem 0.3rem; border-radius: 0.25rem; background: rgba(128, 128, 128, 0.15); }
</style>"""  # how untrusted text shown as HTML (ui/text.py) looks: app.py adds it once per run


def statistics_caught_up(db) -> None:
    """Bring the stored statistics up to date (work in proportion to the new rankings) and say what they leave out."""
    with st.spinner("Reading the new rankings…"):
        quality.refresh(db)
    unreadable = quality.unreadable_rankings(db)
    if unreadable:
        st.warning(f"{len(unreadable):,} stored rankings cannot be read and are left out of these figures "
                   f"(ids {', '.join(map(str, unreadable[:10]))}{' …' if len(unreadable) > 10 else ''}).")


def untrusted(text: str, where=st) -> None:
    """Untrusted text (a prompt, a completion, a turn, guidelines) with its Markdown formatting, as inert HTML."""
    where.html(untrusted_html(text))


def turn(message: dict) -> None:
    """One turn of a conversation, as a chat bubble."""
    with st.chat_message(message["role"], avatar=AVATARS[message["role"]]):
        untrusted(message["content"])


def as_shown(item, display_order: list[int]) -> None:
    """An item as its annotator saw it: the prompt (or conversation), then each completion under the letter it had,
    marked when cut at the token cap. For a ranking read later (My rankings, Review): letters in comments match."""
    if is_conversation(item.messages):
        for message in item.messages:
            turn(message)
    else:
        with st.container(border=True):
            untrusted(item.prompt)
    for letter, position in zip(LETTERS, display_order):
        completion = item.completions[position]
        st.markdown(f":violet-badge[Completion **{letter}**]" + (" :orange-badge[cut at the token cap]" if completion.cut else ""))
        untrusted(completion.text) if completion.text.strip() else st.markdown(EMPTY_ANSWER)
