"""The consensus of one item: Bradley-Terry strengths of its completions from its rankings, with intervals."""

import pandas as pd
import streamlit as st

from data import annotation, items, quality
from data.rankings import LETTERS
from ui.session import screen
from ui.widgets import untrusted

with screen("Item consensus") as (db, user):
    ranked = items.ranked_items(db, limit=200)
    if not ranked:
        st.caption("No ranked items yet.")
        st.stop()
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    item = left.selectbox("One of the 200 newest ranked items", ranked,
                          format_func=lambda r: f"#{r['id']} · {r['n_rankings']} ranking{'s' if r['n_rankings'] != 1 else ''} · "
                                                f"{r['prompt'][:70]}")
    typed = right.number_input("…or any item id (0: the one on the left)", 0, value=0)
    item_id = int(typed) or item["id"]
    consensus = quality.item_consensus(db, item_id)
    if not consensus:
        st.info(f"Item {item_id} has no rankings to build a consensus from (or does not exist).")
        st.stop()
    st.caption(f"Item {item_id}: Bradley-Terry strength of each completion from its rankings, with a 95% bootstrap interval "
               "(with a single ranking, the interval cannot show any doubt). Letters are the stored order, as in the exports: each "
               "annotator saw the answers shuffled (Quality → Review shows a ranking as its annotator saw it).")
    table = pd.DataFrame(consensus).drop(columns=["position"], errors="ignore").round(3)  # the letter says the position
    st.dataframe(table.rename(columns={"mean_rank": "mean rank (1 = best)"}), hide_index=True, placeholder="—")
    with st.expander("The completions"):
        for completion in annotation.completions_of(db, item_id):
            st.markdown(f":violet-badge[Completion **{LETTERS[completion.position]}**]")
            untrusted(completion.text)
