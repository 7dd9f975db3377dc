"""The consensus of one item: Bradley-Terry strengths of its completions from its rankings, with intervals."""

import pandas as pd
import streamlit as st

from data import annotation, items, quality
from data.rankings import LETTERS
from ui.session import screen
from ui.text import safe_markdown

with screen("Item consensus") as (db, user):
    ranked = items.ranked_items(db, limit=200)
    if not ranked:
        st.caption("No ranked items yet.")
        st.stop()
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    item = left.selectbox("One of the 200 newest ranked items", ranked,
                          format_func=lambda r: f"#{r['id']} · {r['n_rankings']} rankings · {r['prompt'][:70]}")
    item_id = right.number_input("…or any item id", 1, value=item["id"])
    st.dataframe(pd.DataFrame(quality.item_consensus(db, int(item_id))).round(3), hide_index=True)
    with st.expander("The completions"):
        for completion in annotation.completions_of(db, int(item_id)):
            st.markdown(f":violet-badge[Completion **{LETTERS[completion.position]}**]")
            st.markdown(safe_markdown(completion.text))
