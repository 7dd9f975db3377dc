"""RLHF loop: rank completions, train a reward model, update the generator. `streamlit run app.py`.

A navigation is declared on every run (ui/navigation.py), so Streamlit never lists the files of
pages/ itself: logged out, the log-in screen is the only page, under every screen's address; an
annotator gets Annotate; an admin gets one screen per task, and only the open screen computes anything.
"""

from pathlib import Path

import streamlit as st

from data.store import StoreBusy
from ui.login import own_password_form
from ui.navigation import logged_out_navigation, navigation
from ui.session import log_out, session_db, signed_in, sync_cookie
from ui.widgets import UNTRUSTED_STYLE

st.set_page_config(page_title="RLHF loop", page_icon=str(Path(__file__).parent / "ui" / "icon.png"), layout="wide")
st.html(UNTRUSTED_STYLE)
try:
    db = session_db()
    user = signed_in(db)
    sync_cookie()
    if user is None:
        page = st.navigation(logged_out_navigation(), position="hidden")
    else:
        page = st.navigation(navigation(user), expanded=True)
        with st.sidebar:
            st.caption(f"Logged in as **{user.name}** ({user.role})")
            own_password_form(db, user)
            st.button("Log out", on_click=log_out)
    page.run()
except StoreBusy as busy:
    st.warning(f"{busy} Nothing you entered is lost.")
    st.button("Try again", type="primary")
