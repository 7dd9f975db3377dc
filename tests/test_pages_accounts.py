"""Log-in, the first admin, and every callback and fragment re-checking who is asking (AppTest)."""

import pytest
from streamlit.testing.v1 import AppTest

from data import accounts, jobs
from data.store import open_db
from tests.test_pages import APP, log_in_as, start, unescaped, untrusted_text

SSO = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x", "client_id": "id",
       "client_secret": "s", "server_metadata_url": "https://sso.example.com/.well-known/openid-configuration"}


def assert_logged_out(at) -> None:
    """Nothing of the page is served. (AppTest re-runs the open page's file itself, whose guard then stops it;
    the real server runs app.py, which serves the log-in form instead: tests/test_browser.py shows that.)"""
    assert "account" not in at.session_state and not at.main.caption
    assert any(t.key == "login-name" for t in at.text_input) or "session has ended" in unescaped(at.error[0])


def log_in_form(at, name: str, password: str):
    at.text_input(key="login-name").input(name)
    at.text_input(key="login-password").input(password)
    at.button(key="FormSubmitter:log-in-Log in").click().run()
    return at


def test_log_in_with_a_password_then_log_out(app_db):
    accounts.create_user(app_db, "gina", "a-long-password")
    at = log_in_form(start(user=None), "gina", "wrong password")
    assert "wrong name or password" in unescaped(at.error[0])
    log_in_form(at, "gina", "a-long-password")
    assert not at.exception and "Ranking as **gina**" in at.main.caption[0].value
    next(b for b in at.sidebar.button if b.label == "Log out").click().run()
    assert "account" not in at.session_state and not at.main.caption  # nothing of the page is served any more


def test_a_disabled_account_is_logged_out_and_cannot_log_in(app_db):
    accounts.create_user(app_db, "hal", "a-long-password")
    at = start(user="hal")
    assert "Ranking as **hal**" in at.main.caption[0].value
    accounts.set_disabled(app_db, accounts.active_user(app_db, "admin"), "hal", True)
    assert_logged_out(at.run())
    assert "wrong name or password" in log_in_form(start(user=None), "hal", "a-long-password").error[0].value  # as a wrong one


def test_a_password_reset_ends_the_old_session(app_db):
    accounts.create_user(app_db, "ida", "a-long-password")
    at = start(user="ida")
    accounts.reset_password(app_db, accounts.active_user(app_db, "admin"), "ida", "a-new-password")
    assert_logged_out(at.run())


def test_too_many_failures_pause_log_ins_with_the_same_message_for_any_name(app_db):
    at = start(user=None)
    for _ in range(accounts.FREE_FAILURES["name"]):
        log_in_form(at, "admin", "guess")
    log_in_form(at, "admin", "admin-password")
    assert "too many failed log-ins" in unescaped(at.error[0]) and "account" not in at.session_state


def first_admin_form(at, token: str, name: str = "root"):
    for key, value in (("admin-token", token), ("admin-name", name), ("admin-password", "a-long-password"),
                       ("admin-repeat", "a-long-password")):
        at.text_input(key=key).input(value)
    at.button(key="FormSubmitter:first-admin-Create admin and log in").click().run()
    return at


def test_the_first_admin_needs_the_setup_token_from_the_server_log(db_path, monkeypatch):
    from ui.login import setup_token

    monkeypatch.setenv("RLHF_DB", str(db_path))
    at = start(user=None)
    assert "No admin yet" in unescaped(at.info[0])
    first_admin_form(at, "a-guessed-token")
    assert "wrong setup token" in unescaped(at.error[0]) and accounts.needs_first_admin(open_db(db_path))
    first_admin_form(at, setup_token())
    assert not at.exception and "account" in at.session_state
    assert accounts.authenticate(open_db(db_path), "root", "a-long-password").is_admin


def test_a_first_admin_form_opened_before_an_admin_existed_cannot_make_a_second_one(db_path, monkeypatch):
    from ui.login import setup_token

    monkeypatch.setenv("RLHF_DB", str(db_path))
    at = start(user=None)
    assert "No admin yet" in unescaped(at.info[0])
    accounts.create_user(open_db(db_path), "cli-admin", "a-long-password", role="admin")  # `python -m data create-user`
    first_admin_form(at, setup_token(), name="late")
    assert "an admin account exists already" in unescaped(at.error[0])
    assert [u["name"] for u in accounts.list_users(open_db(db_path))] == ["cli-admin"]


def test_an_open_team_form_of_a_disabled_admin_creates_nothing(app_db):
    accounts.create_user(app_db, "second", "a-long-password", role="admin")
    at = start("pages/operate/team.py", user="second")
    at.text_input(key="new-name").input("sneaky")
    at.text_input(key="new-password").input("a-long-password")
    at.radio(key="new-role").set_value("admin")
    accounts.set_disabled(app_db, accounts.active_user(app_db, "admin"), "second", True)  # meanwhile, the other admin
    at.button(key="FormSubmitter:create-user-Create account").click().run()
    assert accounts.active_user(app_db, "sneaky") is None
    assert_logged_out(at)


def test_a_demoted_admin_loses_the_admin_screens_at_once(app_db):
    accounts.create_user(app_db, "second", "a-long-password", role="admin")
    at = start("pages/operate/team.py", user="second")
    accounts.set_role(app_db, accounts.active_user(app_db, "admin"), "second", "annotator")
    at.button(key="FormSubmitter:create-user-Create account").click().run()
    assert not any(t.label.startswith("Name (or e-mail") for t in at.text_input)
    assert len(accounts.list_users(app_db)) == 2


def test_the_team_screen_refuses_disabling_yourself(app_db):
    at = start("pages/operate/team.py")
    at.selectbox(key="change-name").set_value("admin")
    at.radio(key="change-action").set_value("disable")
    at.button(key="FormSubmitter:change-user-Apply").click().run()
    assert "cannot disable your own account" in unescaped(at.error[0])
    assert accounts.active_user(app_db, "admin") is not None


def test_an_admin_resetting_their_own_password_on_team_stays_logged_in_on_this_screen(app_db):
    at = start("pages/operate/team.py")
    at.selectbox(key="audit-who").set_value("admin").run()  # what the tab holds survives the reset
    at.selectbox(key="change-name").set_value("admin")
    at.radio(key="change-action").set_value("reset password")
    at.text_input(key="change-password").input("a-brand-new-password")
    at.button(key="FormSubmitter:change-user-Apply").click().run()
    assert not at.exception and unescaped(at.success[0]) == ("admin: reset password done. You stay logged in here; your "
                                                             "sessions in other browsers have ended.")
    assert at.text_input(key="change-password").value == ""  # not left typed, to go with the next change
    assert at.run().selectbox(key="audit-who").value == "admin" and not at.error
    assert accounts.authenticate(app_db, "admin", "a-brand-new-password").is_admin


def test_admin_creates_disables_and_promotes_accounts(app_db):
    at = start("pages/operate/team.py")
    at.text_input(key="new-name").input("jo")
    at.text_input(key="new-password").input("short")
    at.button(key="FormSubmitter:create-user-Create account").click().run()
    assert at.error and at.text_input(key="new-name").value == "jo"  # a refused password keeps the name typed
    at.text_input(key="new-password").input("a-long-password")
    at.button(key="FormSubmitter:create-user-Create account").click().run()
    assert accounts.authenticate(app_db, "jo", "a-long-password").role == "annotator"
    assert at.text_input(key="new-name").value == "" and at.text_input(key="new-password").value == ""
    assert unescaped(at.success[0]).startswith("jo can log in now at ")  # where to, for the admin to pass on (walk)
    at.selectbox(key="change-name").set_value("jo")
    at.radio(key="change-action").set_value("make admin")
    at.button(key="FormSubmitter:change-user-Apply").click().run()
    assert accounts.active_user(app_db, "jo").is_admin
    at.radio(key="change-action").set_value("disable")
    at.button(key="FormSubmitter:change-user-Apply").click().run()
    with pytest.raises(accounts.AuthError, match="wrong name or password"):  # a disabled account learns nothing more
        accounts.authenticate(app_db, "jo", "a-long-password")


def fragment_script():
    from ui.jobs import recent_jobs
    from ui.session import session_db

    recent_jobs(session_db())


def test_the_live_jobs_fragment_re_checks_the_account_on_its_own(app_db):
    job_id = jobs.create_job(app_db, "generate", {})
    accounts.create_user(app_db, "second", "a-long-password", role="admin")
    at = AppTest.from_function(fragment_script, default_timeout=30)
    log_in_as(at, "second")
    at.run()
    assert any(f"Job {job_id}" in m.value for m in at.markdown) and at.button(key=f"jobs-cancel-{job_id}")
    accounts.set_disabled(app_db, accounts.active_user(app_db, "admin"), "second", True)
    at.run()
    assert not any(f"Job {job_id}" in m.value for m in at.markdown) and not at.button
    assert "session has ended" in unescaped(at.error[0])


@pytest.mark.parametrize("user", ["ivy", "rita the reviewer", None])
@pytest.mark.parametrize("screen", ["operate/team", "data/import", "train/reward", "operate/export", "operate/jobs"])
def test_admin_screens_render_nothing_for_annotators_reviewers_or_logged_out_sessions(app_db, user, screen):
    if user:
        accounts.create_user(app_db, user, "a-long-password", role="reviewer" if "reviewer" in user else "annotator")
    at = start(user=user)
    try:
        at.switch_page(f"pages/{screen}.py").run()
    except Exception:  # noqa: BLE001  not a page of this session's navigation at all
        pass
    rendered = [m.value for m in at.markdown] + [b.label for b in at.button] + [t.label for t in at.text_input]
    assert not any("Start" in x or "Import" in x or "Create account" in x or "Download" in x for x in rendered), rendered
    assert not at.metric and not at.get("download_button") and not at.dataframe
    assert [u["name"] for u in accounts.list_users(app_db)] == ["admin"] + ([user] if user else [])


def sso_app(email: str, verified: bool | None = True, trust_provider: bool = False) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = SSO
    if trust_provider:
        at.secrets["rlhf"] = {"sso_emails_verified": True}
    at.user = {"is_logged_in": True, "email": email, **({} if verified is None else {"email_verified": verified})}
    return at.run()


def test_single_sign_on_maps_an_enabled_account_only(app_db):
    accounts.create_user(app_db, "sso@example.com", None)
    at = sso_app("sso@example.com")
    assert not at.exception and "Ranking as **sso@example.com**" in at.main.caption[0].value
    assert "no enabled account here" in sso_app("stranger@example.com").error[0].value
    from data import annotation

    annotation.annotator_id(app_db, "contractor@vendor.example")  # a name from an imported file
    assert "no enabled account here" in sso_app("contractor@vendor.example").error[0].value


@pytest.mark.parametrize("verified, trust_provider, let_in", [(True, False, True), (None, False, False), (False, False, False),
                                                              (None, True, True), (False, True, False)])
def test_single_sign_on_needs_a_verified_email_unless_the_admin_trusts_the_provider(app_db, verified, trust_provider, let_in):
    accounts.create_user(app_db, "sso@example.com", None)
    at = sso_app("sso@example.com", verified, trust_provider)
    assert ("Ranking as **sso@example.com**" in " ".join(c.value for c in at.main.caption)) == let_in


def test_a_reviewer_gets_annotate_and_review_and_decides_on_others_rankings_only(app_db):
    from data import annotation, review

    accounts.create_user(app_db, "rita", "a-long-password", role="reviewer")
    accounts.create_user(app_db, "alice", "a-long-password")
    items = [row[0] for row in app_db.execute("SELECT id FROM items ORDER BY id LIMIT 2")]
    for who, item in (("rita", items[0]), ("alice", items[1])):  # alice saw stored answer 2 as A, 0 as B, 3 as C, 1 as D
        annotation.submit_ranking(app_db, item, annotation.annotator_id(app_db, who), [[0], [1], [2], [3]], [2, 0, 3, 1],
                                  flags=["prompt unclear"], comment="B is the only complete one")
    at = start("pages/quality/review.py", user="rita")
    assert not at.exception and at.title[0].value == "Review"
    assert [o for o in at.selectbox(key="review-pick-flagged").options] == [f"ranking 2 by alice of item {items[1]}"]
    # the reviewer reads the ranking, the comment's letters and the answers as alice saw them, not in the stored order
    assert at.dataframe[0].value["ranking given"].tolist() == ["B > D > A > C", "B > D > A > C"]
    shown = [unescaped(m) for m in at.markdown]
    assert "**alice** ranked: **B > D > A > C**" in shown[0] and "B is the only complete one" in shown[0]
    third_answer = app_db.execute("SELECT text FROM completions WHERE item_id = ? AND position = 2", [items[1]]).fetchone()[0]
    answers = untrusted_text(at.main)[1:]  # after the prompt: the answers in the letters alice saw
    assert third_answer.split()[0] in answers[0]
    at.text_input(key="review-reason-2").input("ranked in 2 seconds")
    next(b for b in at.button if b.label == "Reject").click().run()
    assert [e["by"] for e in review.review_events(app_db)] == ["rita"]
    at = start(user="alice")
    try:
        at.switch_page("pages/quality/review.py").run()
    except Exception:  # noqa: BLE001  not a page of an annotator's navigation at all
        pass
    assert not any(t.value == "Review" for t in at.title) and not any(b.label == "Reject" for b in at.button)


def test_logging_in_while_another_process_holds_the_store_says_so_without_a_traceback(app_db, monkeypatch):
    """Finding 17 of the third trust pass: a logged-out visitor got a raw stack trace."""
    import os
    import sqlite3

    from data import store

    accounts.create_user(app_db, "kim", "a-long-password")
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.3)
    blocker = sqlite3.connect(os.environ["RLHF_DB"])
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    at = log_in_form(start(user=None), "kim", "a-long-password")
    assert not at.exception and "store is busy" in unescaped(at.warning[0]) and "account" not in at.session_state
    blocker.rollback()
    at = log_in_form(start(user=None), "kim", "a-long-password")
    assert "account" in at.session_state


def test_admin_actions_are_in_the_audit_log_on_team_with_who_and_when(app_db, tmp_path):
    """Trust pass 3, finding 22: nothing recorded who started a job, changed an account, imported, exported, reviewed."""
    from data import audit, importing
    from data.importing import PromptRow

    admin = accounts.session_user(app_db, *app_db.execute("SELECT id, session_epoch FROM annotators WHERE name = 'admin'").fetchone())
    accounts.create_user(app_db, "rita", "a-long-password", role="reviewer", actor=admin)
    accounts.set_role(app_db, admin, "rita", "annotator")
    importing.import_prompts(app_db, [PromptRow("Why is the sky blue?")], "physics", actor=admin)
    job_id = jobs.create_job(app_db, "export", {"kind": "pairs", "format": "jsonl", "out": str(tmp_path / "x.jsonl")},
                             actor=admin)
    jobs.request_cancel(app_db, job_id, actor=admin)
    entries = audit.recent(app_db)
    assert [(e["who"], e["action"], e["target"]) for e in entries[:5]] == [
        ("admin", "cancel job", f"job {job_id}"), ("admin", "start export", f"job {job_id}"),
        ("admin", "import prompts", "physics"), ("admin", "change role", "rita"), ("admin", "create account", "rita")]
    assert "from: reviewer, to: annotator" in entries[3]["detail"]
    at = start("pages/operate/team.py")
    log = next(d.value for d in at.dataframe if "action" in d.value.columns)
    assert list(log["action"][:2]) == ["cancel job", "start export"] and set(log["who"][:5]) == {"admin"}
    at.selectbox(key="audit-who").set_value(audit.CLI).run()  # the accounts made by the test's setup, from no session
    log = next(d.value for d in at.dataframe if "action" in d.value.columns)
    assert set(log["who"]) == {audit.CLI} and "create account" in set(log["action"])


def test_a_demoted_admin_cannot_start_a_job_or_import_even_with_an_old_session(app_db, tmp_path):
    from data import importing
    from data.importing import PromptRow

    accounts.create_user(app_db, "second", "a-long-password", role="admin")
    second = accounts.session_user(app_db, *app_db.execute("SELECT id, session_epoch FROM annotators WHERE name = 'second'").fetchone())
    accounts.set_role(app_db, None, "second", "annotator")
    with pytest.raises(accounts.AuthError):
        jobs.create_job(app_db, "export", {"kind": "pairs", "format": "jsonl", "out": str(tmp_path / "x.jsonl")}, actor=second)
    with pytest.raises(accounts.AuthError):
        importing.import_prompts(app_db, [PromptRow("q")], "s", actor=second)
    assert app_db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def change_own_password(at, current: str, new: str, repeat: str | None = None):
    for key, value in zip(("own-current-password", "own-new-password", "own-password-again"), (current, new, repeat or new)):
        at.sidebar.text_input(key=key).input(value)
    at.sidebar.button(key="FormSubmitter:own-password-Save the new password").click().run()
    return at


def test_an_annotator_changes_their_own_password_in_the_sidebar_and_stays_logged_in(app_db):
    accounts.create_user(app_db, "gina", "a-long-password")
    at = start(user="gina")
    change_own_password(at, "a-long-password", "a-new-password", "a-typo-password")
    assert "two new passwords differ" in at.sidebar.error[0].value
    change_own_password(at, "not-my-password", "a-new-password")
    assert "current password is not right" in at.sidebar.error[0].value
    change_own_password(at, "a-long-password", "a-new-password")
    assert not at.exception and "Password changed" in at.sidebar.success[0].value
    assert "Ranking as **gina**" in at.run().main.caption[0].value  # this tab goes on under the new epoch
    assert at.sidebar.text_input(key="own-new-password").value == ""  # nothing typed stays in the form
    assert accounts.authenticate(app_db, "gina", "a-new-password").name == "gina"


def test_a_single_sign_on_account_has_no_password_form(app_db):
    accounts.create_user(app_db, "sso@example.com", None)
    at = start(user="sso@example.com")
    assert not [t for t in at.sidebar.text_input if t.key == "own-new-password"]
    assert [t for t in start(user="admin").sidebar.text_input if t.key == "own-new-password"]
