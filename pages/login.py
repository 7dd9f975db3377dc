"""The log-in form (or, on a brand-new install, the form that creates the first admin).

Not a page of the navigation: app.py shows it instead of any page while nobody is logged in.
"""

import streamlit as st

from data import accounts
from pages.common import flash, show_flash, sso_configured


def log_in(db) -> None:
    try:
        user = accounts.authenticate(db, st.session_state.get("login-name", ""), st.session_state.get("login-password", ""))
        st.session_state.user_name = user.name
    except accounts.AuthError as error:
        flash("error", str(error))


def create_first_admin(db) -> None:
    password = st.session_state.get("admin-password", "")
    try:
        if password != st.session_state.get("admin-repeat", ""):
            raise accounts.AuthError("the two passwords differ")
        st.session_state.user_name = accounts.create_user(db, st.session_state.get("admin-name", ""), password, role="admin").name
    except accounts.AuthError as error:
        flash("error", str(error))


def login_form(db) -> None:
    st.title("RLHF loop")
    show_flash()
    if not accounts.has_admin(db):
        st.info("No admin yet: create the first admin account. (Or from a shell: `python -m data create-user NAME --role admin`.)")
        with st.form("first-admin"):
            st.text_input("Admin name", key="admin-name")
            st.text_input("Password", type="password", key="admin-password", help=f"at least {accounts.MIN_PASSWORD} characters")
            st.text_input("Repeat the password", type="password", key="admin-repeat")
            st.form_submit_button("Create admin and log in", type="primary", on_click=create_first_admin, args=(db,))
        st.stop()

    with st.form("log-in"):
        st.text_input("Name", key="login-name")
        st.text_input("Password", type="password", key="login-password")
        st.form_submit_button("Log in", type="primary", on_click=log_in, args=(db,))
    if sso_configured():
        if st.user.get("is_logged_in"):
            st.error(f"{st.user.get('email')} has no account here: ask an admin to add it.")
        st.button("Log in with single sign-on", on_click=st.login)
