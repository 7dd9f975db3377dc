"""Admin tab: accounts. Create annotators and admins, disable them, reset their passwords."""

import pandas as pd
import streamlit as st

from data import accounts
from pages.common import flash


def create_account(db) -> None:
    name, password = st.session_state.get("new-name", ""), st.session_state.get("new-password", "")
    try:
        accounts.create_user(db, name, password or None, st.session_state.get("new-role", "annotator"))
        flash("success", f"{name} can log in now.")
    except accounts.AuthError as error:
        flash("error", str(error))


def change_account(db, action: str) -> None:
    name = st.session_state.get("change-name")
    try:
        if action == "reset":
            accounts.reset_password(db, name, st.session_state.get("change-password", ""))
        else:
            accounts.set_disabled(db, name, action == "disable")
        flash("success", f"{name}: {'password reset' if action == 'reset' else action + 'd'}.")
    except accounts.AuthError as error:
        flash("error", str(error))


def team_section(db) -> None:
    users = accounts.list_users(db)
    st.dataframe(pd.DataFrame(users), hide_index=True)
    left, right = st.columns(2)
    with left.form("create-user", clear_on_submit=True):
        st.markdown("**New account**")
        st.text_input("Name (or e-mail, for single sign-on)", key="new-name")
        st.text_input("Password (empty: single sign-on only)", type="password", key="new-password")
        st.radio("Role", accounts.ROLES[::-1], horizontal=True, key="new-role")
        st.form_submit_button("Create account", type="primary", on_click=create_account, args=(db,))
    with right.form("change-user"):
        st.markdown("**Change an account**")
        st.selectbox("Account", [u["name"] for u in users], key="change-name")
        st.text_input("New password", type="password", key="change-password")
        reset, disable, enable = st.columns(3)
        reset.form_submit_button("Reset password", on_click=change_account, args=(db, "reset"))
        disable.form_submit_button("Disable", on_click=change_account, args=(db, "disable"))
        enable.form_submit_button("Enable", on_click=change_account, args=(db, "enable"))
