"""RLHF loop: rank completions, train a reward model, update the generator. `streamlit run app.py`."""

import streamlit as st

from pages.common import current_user, log_out, session_db
from pages.login import login_form

st.set_page_config(page_title="RLHF loop", page_icon=":material/reorder:", layout="centered")

db = session_db()
user = current_user(db)
if user is None:  # no page at all is served before logging in
    login_form(db)
    st.stop()
pages = [st.Page("pages/annotate.py", title="Annotate", icon=":material/reorder:", default=True)]
if user.is_admin:  # annotators are never served the admin page, not even by URL
    pages.append(st.Page("pages/admin.py", title="Admin", icon=":material/settings:"))
with st.sidebar:
    st.caption(f"Logged in as **{user.name}** ({user.role})")
    st.button("Log out", on_click=log_out)
st.navigation(pages).run()
