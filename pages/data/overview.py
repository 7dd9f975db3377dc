"""Data overview: headline counts, and N (rankings wanted per item) for each prompt set."""

import streamlit as st

from data import items
from ui.session import screen
from ui.text import safe_markdown

COUNTS = ("prompts", "completions", "rankings", "comparisons", "items", "skips", "annotators", "demonstrations")

with screen("Overview") as (db, user):
    counts = items.counts(db)
    for column, name in zip(st.columns(4) * 2, COUNTS):
        column.metric(name.capitalize(), f"{counts[name]:,}")
    st.markdown("**Prompt sets** · N is how many rankings each item gets before it leaves every queue.")
    for prompt_set in items.prompt_sets(db):
        left, middle, right = st.columns([3, 2, 1], vertical_alignment="bottom")
        left.markdown(f"{safe_markdown(prompt_set['name'])} · {prompt_set['prompts']:,} prompts")
        n = middle.number_input("N", 1, 20, prompt_set["rankings_wanted"], key=f"n-{prompt_set['name']}")
        if right.button("Save", key=f"save-n-{prompt_set['name']}"):
            items.set_rankings_wanted(db, prompt_set["name"], int(n))
            st.toast(safe_markdown(f"{prompt_set['name']}: {int(n)} rankings per item"))
