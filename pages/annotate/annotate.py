"""Annotate: rank one prompt's completions best to worst, ties allowed."""

import time

import streamlit as st

from data import annotation, demonstrations
from data.rankings import LETTERS, RankingError, ranking_from_input, shown_text
from data.store import StoreBusy
from ui.session import error_boundary, flash, guarded, require, session_db, show_flash
from ui.text import safe_markdown

KEPT = "kept-entries"  # what an annotator entered, kept across a run that could not reach the store
LEFT = "items-left"  # (count, when counted): the count visits every open item, so it is redone at most every 30 s
RECOUNT_S = 30


def items_left(db, user) -> int:
    count, counted_at = st.session_state.get(LEFT, (0, 0.0))
    if time.time() - counted_at > RECOUNT_S:
        count, counted_at = annotation.items_left(db, user.id), time.time()
        st.session_state[LEFT] = (count, counted_at)
    return count


def count_one_down() -> None:
    if LEFT in st.session_state:
        count, counted_at = st.session_state[LEFT]
        st.session_state[LEFT] = (max(0, count - 1), counted_at)


def entry_keys(item) -> list[str]:
    key = f"item-{item.id}"
    return [f"{key}-typed", f"{key}-flags", f"{key}-comment", *(f"{key}-rank-{i}" for i in range(item.k))]


def keep_entries(item) -> None:
    st.session_state[KEPT] = {k: st.session_state[k] for k in entry_keys(item) if st.session_state.get(k) is not None}


def restore_entries() -> None:
    for k, value in st.session_state.pop(KEPT, {}).items():
        st.session_state.setdefault(k, value)


@guarded()
def submit(db, user, item, order: list[int], skipped: bool) -> None:
    key = f"item-{item.id}"
    seconds = round(time.time() - st.session_state.get(f"{key}-shown-at", time.time()), 1)
    flags = st.session_state.get(f"{key}-flags") or []
    comment = st.session_state.get(f"{key}-comment") or ""
    try:
        if skipped:
            annotation.skip_item(db, item.id, user.id, order, seconds, flags, comment)
            count_one_down()
            flash("info", "Skipped.")
            return
        ranks = [st.session_state.get(f"{key}-rank-{i}") for i in range(item.k)]
        groups = ranking_from_input(st.session_state.get(f"{key}-typed") or "", ranks, order)
        saved = annotation.submit_ranking(db, item.id, user.id, groups, order, seconds, flags, comment)
        if saved.was_new:
            count_one_down()
        flash("success", f"Saved: {shown_text(groups, order)}" if saved.was_new else "Already saved.")
    except (RankingError, ValueError) as error:
        flash("error", str(error))
    except StoreBusy as busy:
        keep_entries(item)
        flash("warning", f"{busy} Your ranking is NOT saved yet; what you entered is kept: press Submit again.")


@guarded()
def save_demonstration(db, user, prompt_id: int, key: str, source_completion_id: int | None, shown_at: str) -> None:
    seconds = round(time.time() - st.session_state.get(shown_at, time.time()), 1)
    try:
        demonstrations.save_demonstration(db, prompt_id, user.id, st.session_state.get(key) or "", source_completion_id, seconds)
        flash("success", "Demonstration saved" + (", and ranked above the completion it came from." if source_completion_id else "."))
    except (ValueError, LookupError) as error:
        flash("error", str(error))
    except StoreBusy as busy:
        flash("warning", f"{busy} Your demonstration is NOT saved yet and is kept: press Save again.")


def skip_prompt(prompt_id: int) -> None:
    st.session_state.setdefault("skipped-prompts", []).append(prompt_id)


def write_demonstrations(db) -> None:
    """The "write demonstrations" queue: prompts that have none yet."""
    prompt = demonstrations.next_prompt_without_demonstration(db, st.session_state.get("skipped-prompts", []))
    show_flash()
    if prompt is None:
        st.success("Every prompt has a demonstration. Thank you!")
        st.stop()
    key = f"demo-{prompt['id']}"
    st.session_state.setdefault(f"{key}-shown-at", time.time())
    st.subheader("Prompt")
    with st.container(border=True):
        st.markdown(safe_markdown(prompt["text"]))
    st.text_area("The answer you wish the model had given", key=key, height=240)
    left, right = st.columns(2)
    left.button("Save demonstration", type="primary", on_click=save_demonstration, args=(prompt["id"], key, None, f"{key}-shown-at"),
                width="stretch")
    right.button("Next prompt", on_click=skip_prompt, args=(prompt["id"],), width="stretch")
    st.stop()


def demonstration_from(item, order: list[int]) -> None:
    """Write a better answer for the shown item, from scratch or by editing a completion."""
    with st.expander("Write a better answer instead (a demonstration)"):
        choices = ["(blank)", *LETTERS[: item.k]]
        start = st.selectbox("Start from", choices, key=f"item-{item.id}-demo-start",
                             help="Editing a completion also stores your edit as preferred over it.")
        source = None if start == "(blank)" else item.completions[order[LETTERS.index(start)]]
        key = f"item-{item.id}-demo-{start}"
        st.text_area("Your answer", value=source.text if source else "", key=key, height=200)
        st.button("Save demonstration", key=f"{key}-save", on_click=save_demonstration,
                  args=(item.prompt_id, key, source.id if source else None, f"item-{item.id}-shown-at"))


db = session_db()
user = require(db)
with error_boundary(details=False):  # an annotator never sees a traceback
    mode = st.radio("Task", ["Rank completions", "Write demonstrations"], horizontal=True, key="task", label_visibility="collapsed")
    if mode == "Write demonstrations":
        write_demonstrations(db)
    item = annotation.next_item(db, user.id)  # a busy store: the boundary keeps what was entered and offers a retry
    st.caption(f"Ranking as **{user.name}** · {annotation.ranked_count(db, user.id)} ranked, {items_left(db, user)} left")
    show_flash()
    if item is None:
        st.success("Nothing left to rank for you. Thank you! New items appear when the admin generates or imports more.")
        st.stop()
    restore_entries()

    order = annotation.display_order(item.id, user.id, item.k)
    key = f"item-{item.id}"
    st.session_state.setdefault(f"{key}-shown-at", time.time())

    st.subheader("Prompt")
    with st.container(border=True):
        st.markdown(safe_markdown(item.prompt))
    st.subheader(f"{item.k} completions")
    for letter, position in zip(LETTERS, order):
        with st.container(border=True):
            st.markdown(f":violet-badge[Completion **{letter}**]")  # content cannot make a badge: safe_markdown escapes brackets
            st.markdown(safe_markdown(item.completions[position].text))

    demonstration_from(item, order)

    with st.form(key, border=True):
        st.text_input(
            "Ranking, best first", key=f"{key}-typed", placeholder="e.g. D > C > A = B   (or DCA=B), then Enter",
            help="Letters best to worst; '=' ties two completions. When filled, this wins over the buttons below.",
        )
        st.caption("…or give each completion a rank (1 = best; equal ranks are ties):")
        for i in range(item.k):
            st.segmented_control(f"Rank of {LETTERS[i]}", list(range(1, item.k + 1)), key=f"{key}-rank-{i}")
        st.pills("Flags", annotation.FLAGS, selection_mode="multi", key=f"{key}-flags")
        st.text_input("Comment (optional)", key=f"{key}-comment")
        left, right = st.columns(2)
        left.form_submit_button("Submit ranking", type="primary", on_click=submit, args=(item, order, False), width="stretch")
        right.form_submit_button("Skip", on_click=submit, args=(item, order, True), width="stretch")
