"""Annotate: rank one prompt's completions best to worst, ties allowed."""

import time

import streamlit as st

from data import annotation, demonstrations
from data.rankings import LETTERS, RankingError, ranking_from_input, shown_text
from pages.common import current_user, flash, session_db, show_flash


def submit(db, item, annotator: int, order: list[int], skipped: bool) -> None:
    key = f"item-{item.id}"
    seconds = round(time.time() - st.session_state.get(f"{key}-shown-at", time.time()), 1)
    flags = st.session_state.get(f"{key}-flags") or []
    comment = st.session_state.get(f"{key}-comment") or ""
    try:
        if skipped:
            annotation.skip_item(db, item.id, annotator, order, seconds, flags, comment)
            flash("info", "Skipped.")
            return
        ranks = [st.session_state.get(f"{key}-rank-{i}") for i in range(item.k)]
        groups = ranking_from_input(st.session_state.get(f"{key}-typed") or "", ranks, order)
        saved = annotation.submit_ranking(db, item.id, annotator, groups, order, seconds, flags, comment)
        flash("success", f"Saved: {shown_text(groups, order)}" if saved.was_new else "Already saved.")
    except (RankingError, ValueError) as error:
        flash("error", str(error))


def save_demonstration(db, prompt_id: int, annotator: int, key: str, source_completion_id: int | None, shown_at: str) -> None:
    seconds = round(time.time() - st.session_state.get(shown_at, time.time()), 1)
    try:
        demonstrations.save_demonstration(db, prompt_id, annotator, st.session_state.get(key) or "", source_completion_id, seconds)
        flash("success", "Demonstration saved" + (", and ranked above the completion it came from." if source_completion_id else "."))
    except (ValueError, LookupError) as error:
        flash("error", str(error))


def skip_prompt(prompt_id: int) -> None:
    st.session_state.setdefault("skipped-prompts", []).append(prompt_id)


def write_demonstrations(db, annotator: int) -> None:
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
        st.markdown(prompt["text"])
    st.text_area("The answer you wish the model had given", key=key, height=240)
    left, right = st.columns(2)
    left.button("Save demonstration", type="primary", on_click=save_demonstration, args=(db, prompt["id"], annotator, key, None, f"{key}-shown-at"),
                use_container_width=True)
    right.button("Next prompt", on_click=skip_prompt, args=(prompt["id"],), use_container_width=True)
    st.stop()


def demonstration_from(db, item, annotator: int, order: list[int]) -> None:
    """Write a better answer for the shown item, from scratch or by editing a completion."""
    with st.expander("Write a better answer instead (a demonstration)"):
        choices = ["(blank)", *LETTERS[: item.k]]
        start = st.selectbox("Start from", choices, key=f"item-{item.id}-demo-start",
                             help="Editing a completion also stores your edit as preferred over it.")
        source = None if start == "(blank)" else item.completions[order[LETTERS.index(start)]]
        key = f"item-{item.id}-demo-{start}"
        st.text_area("Your answer", value=source.text if source else "", key=key, height=200)
        st.button("Save demonstration", key=f"{key}-save", on_click=save_demonstration,
                  args=(db, item.prompt_id, annotator, key, source.id if source else None, f"item-{item.id}-shown-at"))


db = session_db()
user = current_user(db)
if user is None:
    st.stop()
name, annotator = user.name, user.id
mode = st.radio("Task", ["Rank completions", "Write demonstrations"], horizontal=True, key="task", label_visibility="collapsed")
if mode == "Write demonstrations":
    write_demonstrations(db, annotator)
item = annotation.next_item(db, annotator)
progress = annotation.progress(db, annotator)

st.caption(f"Ranking as **{name}** · {progress.ranked} ranked, {progress.left} left")
show_flash()
if item is None:
    st.success("Nothing left to rank for you. Thank you! New items appear when the admin generates or imports more.")
    st.stop()

order = annotation.display_order(item.id, annotator, item.k)
key = f"item-{item.id}"
st.session_state.setdefault(f"{key}-shown-at", time.time())

st.subheader("Prompt")
with st.container(border=True):
    st.markdown(item.prompt)
st.subheader(f"{item.k} completions")
for letter, position in zip(LETTERS, order):
    with st.container(border=True):
        st.markdown(f"**{letter}**")
        st.markdown(item.completions[position].text)

demonstration_from(db, item, annotator, order)

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
    left.form_submit_button("Submit ranking", type="primary", on_click=submit, args=(db, item, annotator, order, False),
                            use_container_width=True)
    right.form_submit_button("Skip", on_click=submit, args=(db, item, annotator, order, True), use_container_width=True)
