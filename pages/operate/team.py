"""Team: accounts, roles, passwords. Every change is re-checked against who is asking, in the callback itself."""

from urllib.parse import urlsplit

import pandas as pd
import streamlit as st

from data import accounts, audit
from data.store import to_the_minute
from ui.session import flash, guarded, renew_session, screen, sso_configured


@guarded("admin")
def create_account(db, user) -> None:
    name, password = st.session_state.get("new-name", ""), st.session_state.get("new-password", "")
    try:
        accounts.create_user(db, name, password or None, st.session_state.get("new-role", "annotator"), actor=user)
        st.session_state["new-name"] = st.session_state["new-password"] = ""  # a refused one keeps what was typed
        flash("success", f"{name} can log in now at {app_address()}: give them that address, their name and the password you "
                         "chose (Reset password below, if it is lost)." if password else
              f"{name} can log in through single sign-on" + ("." if sso_configured() else
                                                             ", once an [auth] section is set in .streamlit/secrets.toml."))
    except accounts.AuthError as error:
        flash("error", f"{name or 'The account'} was not created: {error}.")


def app_address() -> str:
    """The address people open the app at, as this admin's browser reached it (its host, and the base path if set)."""
    parts = urlsplit(st.context.url or "")
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"{parts.scheme}://{parts.netloc}/{base}" if parts.netloc else "this app's address"


ACTIONS = ("reset password", "disable", "enable", "make admin", "make reviewer", "make annotator")


@guarded("admin")
def change_account(db, user) -> None:
    name, action = st.session_state.get("change-name"), st.session_state.get("change-action")
    try:
        if action == "reset password":
            epoch = accounts.reset_password(db, user, name, st.session_state.get("change-password", ""))
            if name == user.name:  # your own reset keeps this session, ends the others
                renew_session(accounts.User(user.id, user.name, user.role, epoch))
                flash("success", f"{name}: reset password done. You stay logged in here; your sessions in other "
                                 "browsers have ended.")
                return
        elif action in ("disable", "enable"):
            accounts.set_disabled(db, user, name, action == "disable")
        else:
            accounts.set_role(db, user, name, action.removeprefix("make "))
        flash("success", f"{name}: {action} done. Their open sessions have ended." if action != "enable" else f"{name} is enabled.")
    except accounts.AuthError as error:
        flash("error", f"{name}: {action} not done: {error}.")
    finally:
        st.session_state["change-password"] = ""  # no password stays typed, to be sent again with another change


with screen("Team") as (db, user):
    users = accounts.list_users(db)
    st.dataframe(pd.DataFrame(users), hide_index=True, column_config={
        "disabled": st.column_config.CheckboxColumn(), "has_password": st.column_config.CheckboxColumn("password"),
        "origin": st.column_config.TextColumn(help="account: made by an admin or the CLI; import: a name from an imported file; "
                                                    "legacy: ranked before accounts existed. Only enabled accounts can log in.")}, placeholder="—")
    left, right = st.columns(2)
    with left.form("create-user"):
        st.markdown("**New account**")
        st.text_input("Name (or e-mail, for single sign-on)", key="new-name")
        st.text_input(f"Password (at least {accounts.MIN_PASSWORD} characters; empty: single sign-on only)", type="password",
                      key="new-password")
        st.radio("Role", accounts.ROLES[::-1], horizontal=True, key="new-role",
                 help="annotator: ranks and writes demonstrations; reviewer: also the Review screen (accept, reject, "
                      "send back others' rankings); admin: everything")
        st.form_submit_button("Create account", type="primary", on_click=create_account)
    with right.form("change-user"):
        st.markdown("**Change an account** · disabling, a password reset or a new role ends its open sessions")
        st.selectbox("Account", [u["name"] for u in users], key="change-name")
        st.radio("Change", ACTIONS, horizontal=True, key="change-action", format_func=str.capitalize)
        st.text_input(f"New password (to reset it; at least {accounts.MIN_PASSWORD} characters)", type="password",
                      key="change-password")
        st.form_submit_button("Apply", on_click=change_account)
    st.subheader("Audit log")
    st.caption("Who did what as an admin, newest first: accounts, jobs started and cancelled, imports, downloads, prompt "
               "sets, guidelines, remote generators, model versions and reviews. Changes from the command line say so.")
    who = st.selectbox("Person", ["everyone", *sorted({u["name"] for u in users if u["role"] in ("admin", "reviewer")}),
                                  audit.CLI], key="audit-who")
    entries = audit.recent(db, 200, None if who == "everyone" else who)
    if entries:
        log = pd.DataFrame(entries)
        log["at"] = log["at"].map(to_the_minute)
        st.dataframe(log, hide_index=True, width="stretch",
                     column_config={"detail": st.column_config.TextColumn(width="large")}, placeholder="—")
    else:
        st.caption("Nothing recorded yet.")
