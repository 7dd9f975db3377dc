"""What every screen shares: the session's database connection, who is asking, and the flash message.

Who is asking is re-read from the store on every call: callbacks and fragments run before (or
without) app.py's own check, so each of them goes through `signed_in`, `require` or `guarded`.
"""

import argparse
import contextlib
import functools
import sys

import streamlit as st
from streamlit.errors import FragmentHandledException

from data import accounts, audit, builtin, versions
from data.store import StoreBusy, db_file, open_db, resolve_db_path
from ui.text import inline

SESSION_ENDED = "Your session has ended (log-in changed or account disabled): log in again."
COOKIE = "rlhf_session"  # the browser's session token: a reload, a new tab or a deep link stays logged in


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
        versions.sweep_staging(db)
        st.session_state.db = db
    return st.session_state.db


def flash(kind: str, message: str, links: tuple[tuple[str, str], ...] = (), place: str | None = None) -> None:
    """Keep a message for the next run (callbacks run before the page renders). `links`: (page file under pages/,
    label) shown under it; `place`: where the screen shows it (a button far down the screen shows its message beside
    itself, not at the top out of sight), None: under the title."""
    st.session_state.flash = (kind, message, links, place)


def show_flash(place: str | None = None) -> None:
    """Show the last run's message meant for this place; it may quote names and values from files, so it is shown
    as one escaped line, its links (our own pages) under it."""
    kind, message, links, wanted = st.session_state.get("flash") or (None, None, (), None)
    if not kind or wanted != place:
        return
    del st.session_state["flash"]
    getattr(st, kind)(inline(message))
    for page, label in links:
        st.page_link(f"pages/{page}.py", label=label)


def sso_configured() -> bool:
    """Streamlit's OIDC log-in (st.login) is on when secrets.toml has an [auth] section."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001  no secrets.toml at all
        return False


def sso_email_verified() -> bool:
    """The provider says it verified the e-mail (`email_verified: true`), or the admin says it verifies every address
    (`sso_emails_verified = true` under [rlhf] in .streamlit/secrets.toml): a missing claim is not a verified one."""
    claim = st.user.get("email_verified")
    if claim is not None:
        return claim is True
    try:
        return st.secrets.get("rlhf", {}).get("sso_emails_verified") is True
    except Exception:  # noqa: BLE001  no secrets.toml
        return False


def start_session(user: accounts.User, remember: bool = True) -> None:
    """Log this tab in as `user`; with `remember`, a new session token goes to the browser (`sync_cookie`)."""
    clear_session()
    st.session_state.account = (user.id, user.epoch)
    if remember:
        st.session_state.cookie = accounts.open_session(session_db(), user, accounts.SESSION_HOURS)


def renew_session(user: accounts.User) -> None:
    """Keep this tab logged in after a change that ended every session of its account (its own new password): the new
    epoch, a new token for the browser, the old token deleted. What the tab holds (a typed ranking) stays."""
    if token := browser_token():
        accounts.end_session(session_db(), token)
    st.session_state.account = (user.id, user.epoch)
    st.session_state.cookie = accounts.open_session(session_db(), user, accounts.SESSION_HOURS)


def clear_session() -> None:
    """Forget everything of the previous account in this tab (typed rankings, counts, widgets) but the connection and the message."""
    for key in list(st.session_state):
        if key not in ("db", "flash"):
            del st.session_state[key]


def browser_token() -> str:
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001  no request context (bare mode)
        return ""
    return token if isinstance(token, str) else ""  # AppTest's context has no real cookies


def sync_cookie() -> None:
    """Write a new session token to the browser, or clear it after a log-out (once, on the run after the change).
    The cookie is readable by the page's scripts (Streamlit cannot set an HttpOnly one); it is SameSite=Strict,
    Secure over HTTPS, and worthless after log-out, its expiry or any change that ends the account's sessions."""
    token = st.session_state.pop("cookie", None)
    if token is None:
        return
    age = int(accounts.SESSION_HOURS * 3600) if token else 0
    st.html(f"""<script>document.cookie = "{COOKIE}={token}; Path=/; Max-Age={age}; SameSite=Strict"
                + (location.protocol === "https:" ? "; Secure" : "");</script>""", unsafe_allow_javascript=True)


def signed_in(db) -> accounts.User | None:
    """The logged-in account, re-read from the store: None once it is disabled, reset or changed role.

    A single sign-on session is re-adopted by e-mail while its account stays enabled.
    """
    account = st.session_state.get("account")
    user = accounts.session_user(db, *account) if account else None
    if user is None and not account and (token := browser_token()):  # a reload or a new tab of a logged-in browser
        user = accounts.resume_session(db, token)
        if user:
            start_session(user, remember=False)
    if user is None and sso_configured() and st.user.get("is_logged_in") and sso_email_verified():
        user = accounts.single_sign_on_user(db, st.user.get("email") or "")
        if user:
            start_session(user)
    if user is None:
        st.session_state.pop("account", None)
    return user


def require(db, role: str = "annotator") -> accounts.User:
    """The asking account, or stop this screen (or fragment) with a message."""
    user = signed_in(db)
    if user is None or not user.has_role(role):
        st.error(SESSION_ENDED if user is None else f"This screen is for {role}s.")
        st.stop()
    return user


def guarded(role: str = "annotator"):
    """Decorate a widget callback `fn(db, user, *args)`: it runs only for a signed-in account of `role`."""
    def decorate(callback):
        @functools.wraps(callback)
        def run(*args, **kwargs):
            db = session_db()
            user = signed_in(db)
            if user is None or not user.has_role(role):
                flash("error", SESSION_ENDED if user is None else f"Only {role}s can do that.")
                return None
            return callback(db, user, *args, **kwargs)
        return run
    return decorate


def log_out() -> None:
    if token := browser_token():
        accounts.end_session(session_db(), token)
    clear_session()
    st.session_state.cookie = ""  # cleared in the browser on the next run
    if sso_configured() and st.user.get("is_logged_in"):
        st.logout()


def admin_download(db, make, what: str):
    """Data for a download button, made only when clicked (`make(db)`), and only while this session is still an enabled
    admin's; the audit log records `what` was downloaded, by whom."""
    account, path = st.session_state.get("account"), db_file(db)

    def data():  # Streamlit runs this in another thread: it gets a connection of its own
        own = open_db(path)
        try:
            user = accounts.session_user(own, *account) if account else None
            if user is None or not user.is_admin:
                raise PermissionError(SESSION_ENDED)
            data = make(own)
            audit.record_alone(own, user, "download", what, {"bytes": len(data)})
            return data
        finally:
            own.close()
    return data


@contextlib.contextmanager
def screen(title: str, role: str = "admin"):
    """One screen: re-check who is asking, title, last run's message; a failure shows here, with its message, and stops
    only this screen (navigation and every other screen keep working)."""
    db = session_db()
    user = require(db, role)
    st.title(title)
    show_flash()
    with error_boundary(details=True):
        yield db, user


@contextlib.contextmanager
def error_boundary(details: bool):
    """Show a failure of what runs inside as a message on this screen (with the traceback only for admins)."""
    try:
        yield
    except FragmentHandledException:  # a fragment's own failure, already shown by Streamlit
        raise
    except StoreBusy as busy:
        show_flash()
        st.warning(f"{busy} Nothing you entered is lost.")
        st.button("Try again", type="primary")
    except Exception as error:  # noqa: BLE001  the project's own bugs or bad data: say so here, keep the rest working
        if not details:
            st.error("Something went wrong showing this. Try again in a moment; if it keeps happening, tell an admin.")
            st.button("Try again", type="primary")
            return
        st.error(inline(f"This screen failed: {type(error).__name__}: {error}. The other screens still work; "
                               "the details below help a developer."))
        with st.expander("Details"):
            st.exception(error)
