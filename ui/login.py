"""The log-in screen (or, on a brand-new install, the form that creates the first admin).

app.py serves it as the only page while nobody is logged in, whatever URL was asked for.
The first-admin form needs the one-time setup token that the server prints in its log, as
Jupyter and Grafana do, so a visitor who can reach the page but not the server cannot take it.
"""

import hmac
import secrets
import sys

import streamlit as st

from data import accounts
from data.secrets import trusted_proxies
from data.store import StoreBusy
from ui.session import flash, guarded, renew_session, session_db, show_flash, sso_configured, start_session


@st.cache_resource(show_spinner=False)
def setup_token() -> str:
    """One token per server process, printed to the server's log the first time it is needed."""
    token = secrets.token_urlsafe(18)
    port = st.get_option("server.port")
    print(f"\n  No admin yet. Create the first one at http://localhost:{port}/?setup={token}\n"
          f"  (setup token: {token})\n", file=sys.stderr, flush=True)
    return token


def client_address() -> str | None:
    """The client's address for the log-in back-off; behind a trusted reverse proxy, from its X-Forwarded-For."""
    try:
        peer, forwarded = st.context.ip_address, st.context.headers.get("X-Forwarded-For")
    except Exception:  # noqa: BLE001  no request context (tests, bare mode)
        return None
    return accounts.client_address(peer, forwarded, trusted_proxies())


def log_in() -> None:
    db = session_db()
    try:
        user = accounts.authenticate(db, st.session_state.get("login-name", ""), st.session_state.get("login-password", ""),
                                     client=client_address())
        start_session(user)
    except accounts.AuthError as error:
        flash("error", str(error))
    except StoreBusy as busy:  # another process held the store's write lock too long: say so, never a traceback
        flash("warning", f"{busy} Log in again in a moment.")


PASSWORD_FIELDS = ("own-current-password", "own-new-password", "own-password-again")
PASSWORD_MESSAGE = "own-password-message"  # (kind, text): shown in the sidebar, where the form is


@guarded()
def change_own_password(db, user) -> None:
    current, new, repeat = (st.session_state.get(key, "") for key in PASSWORD_FIELDS)
    try:
        if new != repeat:
            raise accounts.AuthError("the two new passwords differ")
        epoch = accounts.change_own_password(db, user, current, new, client=client_address())
        renew_session(accounts.User(user.id, user.name, user.role, epoch))
        st.session_state[PASSWORD_MESSAGE] = ("success", "Password changed. You stay logged in here; your sessions in "
                                                          "other browsers have ended.")
    except accounts.AuthError as error:
        st.session_state[PASSWORD_MESSAGE] = ("error", f"Not changed: {error}.")
    except StoreBusy as busy:
        st.session_state[PASSWORD_MESSAGE] = ("warning", f"{busy} Not changed yet: try again in a moment.")
    for key in PASSWORD_FIELDS:  # no password stays typed in the form, whatever the answer
        st.session_state[key] = ""


def own_password_form(db, user) -> None:
    """The sidebar's "Change password", for every account that logs in with one (an admin resets a forgotten one)."""
    if not accounts.has_password(db, user.id):
        return
    with st.popover("Change password", icon=":material/key:"):
        with st.form("own-password", border=False):
            st.text_input("Current password", type="password", key=PASSWORD_FIELDS[0], autocomplete="current-password")
            st.text_input("New password", type="password", key=PASSWORD_FIELDS[1], autocomplete="new-password",
                          help=f"at least {accounts.MIN_PASSWORD} characters")
            st.text_input("Repeat the new password", type="password", key=PASSWORD_FIELDS[2], autocomplete="new-password")
            st.form_submit_button("Save the new password", type="primary", on_click=change_own_password)
        if message := st.session_state.pop(PASSWORD_MESSAGE, None):
            getattr(st, message[0])(message[1])


def create_first_admin() -> None:
    db = session_db()
    password = st.session_state.get("admin-password", "")
    try:
        if not hmac.compare_digest(st.session_state.get("admin-token", "").strip().encode(), setup_token().encode()):
            raise accounts.AuthError("wrong setup token: copy it from the server's log (the terminal running the app)")
        if password != st.session_state.get("admin-repeat", ""):
            raise accounts.AuthError("the two passwords differ")
        start_session(accounts.create_first_admin(db, st.session_state.get("admin-name", ""), password))
        st.query_params.pop("setup", None)  # the token is spent: keep it out of the address bar and history
    except accounts.AuthError as error:
        flash("error", str(error))


def first_admin_form() -> None:
    setup_token()
    st.info("No admin yet: create the first admin account with the setup token printed in the server's log. "
            "(Or from a shell: `python -m data create-user NAME --role admin`.)")
    with st.form("first-admin"):
        st.text_input("Setup token", key="admin-token", type="password", value=st.query_params.get("setup", ""))
        st.text_input("Admin name", key="admin-name")
        st.text_input("Password", type="password", key="admin-password", help=f"at least {accounts.MIN_PASSWORD} characters")
        st.text_input("Repeat the password", type="password", key="admin-repeat")
        st.form_submit_button("Create admin and log in", type="primary", on_click=create_first_admin)


def login_page() -> None:
    db = session_db()
    st.title("RLHF loop")
    show_flash()
    if accounts.needs_first_admin(db):
        first_admin_form()
        return
    with st.form("log-in"):
        st.text_input("Name", key="login-name", autocomplete="username")  # so a browser offers the saved password
        st.text_input("Password", type="password", key="login-password", autocomplete="current-password")
        st.form_submit_button("Log in", type="primary", on_click=log_in)
    if sso_configured():
        if st.user.get("is_logged_in"):
            st.error(f"{st.user.get('email')} has no enabled account here: ask an admin to add or enable it.")
        st.button("Log in with single sign-on", on_click=st.login)
