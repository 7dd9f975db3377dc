"""RLHF loop: rank completions, train a reward model, update the generator. `streamlit run app.py`."""

import streamlit as st

st.set_page_config(page_title="RLHF loop", page_icon=":material/reorder:", layout="centered")

navigation = st.navigation([
    st.Page("pages/annotate.py", title="Annotate", icon=":material/reorder:", default=True),
    st.Page("pages/admin.py", title="Admin", icon=":material/settings:"),
])
navigation.run()
