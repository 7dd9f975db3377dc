"""Guidelines per prompt set (Markdown, versioned: a save with a new text is a new version) and its self-consistency repeats."""

import pandas as pd
import streamlit as st

from data import annotation, guidelines, items
from ui.session import flash, guarded, screen
from ui.widgets import untrusted


@guarded("admin")
def save_text(db, user, prompt_set: str, key: str) -> None:
    before = guidelines.current_guidelines(db, prompt_set)
    try:
        saved = guidelines.save_guidelines(db, prompt_set, st.session_state.get(key, ""), user)
    except ValueError as error:  # AuthError is one too
        flash("error", str(error))
        return
    flash("success", f"{prompt_set}: guidelines version {saved.version} saved; annotators see it on their next item."
          if saved != before else f"{prompt_set}: the text is unchanged, still version {saved.version}.")


@guarded("admin")
def save_repeats(db, user, prompt_set: str) -> None:
    share, gap = st.session_state.get(f"repeat-share-{prompt_set}"), st.session_state.get(f"repeat-gap-{prompt_set}")
    try:
        annotation.set_repeat_settings(db, prompt_set, share / 100, int(gap))
    except ValueError as error:
        flash("error", str(error))
        return
    flash("success", f"{prompt_set}: {share:g}% of each annotator's queue repeats an item they ranked "
                     f"{int(gap)} rankings or a day earlier." if share else f"{prompt_set}: no self-consistency repeats.")


def show_history(history: list[dict]) -> None:
    st.dataframe(pd.DataFrame(history)[["version", "author", "created_at"]], hide_index=True, placeholder="—")
    for version in history[1:]:
        with st.expander(f"Version {version['version']}"):
            untrusted(version["text"])


with screen("Guidelines") as (db, user):
    sets = [s["name"] for s in items.prompt_sets(db)]
    if not sets:
        st.caption("No prompt sets yet: import prompts first (Data → Import).")
        st.stop()
    chosen = st.selectbox("Prompt set", sets, key="guidelines-set")
    current = guidelines.current_guidelines(db, chosen)
    st.caption(f"Version {current.version} is shown to annotators with each item of this set." if current else
               "This set has no guidelines yet. Annotators see them above each item; each ranking records the version.")
    write, preview = st.columns(2)
    key = f"guidelines-text-{chosen}"
    text = write.text_area("Guidelines (Markdown)", current.text if current else "", height=320, key=key,
                           placeholder="What makes a completion better for this set: correctness first? length? tone?")
    preview.caption("Preview, as annotators see it")
    if text.strip():  # a statement, not an expression: Streamlit's magic would show an expression's value
        untrusted(text, preview)
    else:
        preview.markdown("*Nothing written yet.*")
    write.button("Save as a new version", type="primary", on_click=save_text, args=(chosen, key))
    history = guidelines.guideline_history(db, chosen)
    if history:
        st.markdown("**Versions**")
        show_history(history)

    st.markdown("**Self-consistency** · now and then an annotator is served, unannounced and in a new order, an item they "
                "ranked earlier; the Annotators screen compares the two rankings.")
    settings = annotation.repeat_settings(db, chosen)
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    left.number_input("Repeat share (% of the queue)", 0.0, annotation.MAX_REPEAT_SHARE * 100, settings["repeat_share"] * 100,
                      step=0.5, format="%.1f", key=f"repeat-share-{chosen}")
    middle.number_input("Repeat after N of their rankings (or a day)", 1, 10_000, settings["repeat_gap"], key=f"repeat-gap-{chosen}")
    right.button("Save", key="save-repeats", on_click=save_repeats, args=(chosen,))
