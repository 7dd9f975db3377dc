"""What every page shares: the session's database connection and the flash message."""

import argparse
import sys

import streamlit as st

from data import builtin
from data.store import open_db, resolve_db_path


def db_path():
    """`streamlit run app.py -- --db FILE`, else $RLHF_DB, else data/app.db."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--db")
    known, _ = parser.parse_known_args(sys.argv[1:])
    return resolve_db_path(known.db)


def session_db():
    """One connection per browser session, opened (and seeded when new) on first use."""
    if "db" not in st.session_state:
        db = open_db(db_path())
        builtin.init_db(db)
        st.session_state.db = db
    return st.session_state.db


def flash(kind: str, message: str) -> None:
    """Keep a message for the next run (callbacks run before the page renders)."""
    st.session_state.flash = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop("flash", (None, None))
    if kind:
        getattr(st, kind)(message)


@st.cache_resource(max_entries=2, show_spinner="Loading the reward model…")
def reward_scorer(folder: str):
    """The one place the app keeps a reward model in memory, keyed by its folder."""
    from rm.score import RewardScorer

    return RewardScorer(folder)


def sso_configured() -> bool:
    """Streamlit's OIDC log-in (st.login) is on when secrets.toml has an [auth] section."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001  no secrets.toml at all
        return False


def current_user(db):
    """The logged-in account (re-checked every run, so disabling someone logs them out), or None."""
    from data import accounts

    name = st.session_state.get("user_name")
    if name is None and sso_configured() and st.user.get("is_logged_in"):
        name = st.user.get("email")
    user = accounts.active_user(db, name) if name else None
    if user is None:
        st.session_state.pop("user_name", None)
    return user


def require_admin(db):
    """Stop the page unless an admin is logged in: guards every admin page even if opened by URL."""
    user = current_user(db)
    if user is None or not user.is_admin:
        st.error("This page is for admins. Log in with an admin account.")
        st.stop()
    return user


def log_out() -> None:
    st.session_state.pop("user_name", None)
    if sso_configured() and st.user.get("is_logged_in"):
        st.logout()
