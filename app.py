"""RLHF loop: rank completions, train a reward model, update the generator. `streamlit run app.py`.

A navigation is declared on every run, so Streamlit never lists the files of pages/ itself:
logged out, the log-in screen is the only page (whatever URL was asked for); an annotator gets
Annotate; an admin gets one screen per task, and only the open screen computes anything.
"""

import streamlit as st

from data.store import StoreBusy
from ui.login import login_page
from ui.session import log_out, session_db, signed_in

ADMIN_SCREENS = {
    "Data": [("data_overview", "Overview", "dashboard"), ("data_import", "Import", "upload"),
             ("data_generate", "Generate", "auto_awesome")],
    "Quality": [("quality_agreement", "Agreement & health", "handshake"), ("quality_annotators", "Annotators", "groups"),
                ("quality_items", "Item consensus", "leaderboard"), ("quality_gold", "Gold items", "star")],
    "Train": [("train_sft", "Demonstrations & SFT", "edit_note"), ("train_reward", "Reward model", "emoji_events"),
              ("train_policy", "Policy update", "model_training")],
    "Operate": [("team", "Team", "manage_accounts"), ("jobs", "Jobs", "pending_actions"), ("export", "Export", "download")],
}


def navigation(user) -> dict:
    annotate = st.Page("pages/annotate.py", title="Annotate", icon=":material/reorder:", default=True)
    if not user.is_admin:  # annotators are never served an admin screen, not even by URL
        return {"": [annotate]}
    return {"Annotate": [annotate], **{
        section: [st.Page(f"pages/{file}.py", title=title, icon=f":material/{icon}:") for file, title, icon in screens]
        for section, screens in ADMIN_SCREENS.items()}}


st.set_page_config(page_title="RLHF loop", page_icon=":material/reorder:", layout="wide")
try:
    db = session_db()
    user = signed_in(db)
    if user is None:
        page = st.navigation([st.Page(login_page, title="Log in", icon=":material/login:", url_path="login")], position="hidden")
    else:
        page = st.navigation(navigation(user))
        with st.sidebar:
            st.caption(f"Logged in as **{user.name}** ({user.role})")
            st.button("Log out", on_click=log_out)
    page.run()
except StoreBusy as busy:
    st.warning(f"{busy} Nothing you entered is lost.")
    st.button("Try again", type="primary")
