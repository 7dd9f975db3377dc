"""Accounts: first admin, roles, session epochs, back-off, and what imports may not create."""

import statistics
import time

import pytest

from data import accounts, annotation, importing


def admin(db, name="root") -> accounts.User:
    return accounts.create_user(db, name, "a-long-password", role="admin")


def test_the_first_admin_is_refused_once_any_admin_exists_even_a_disabled_one(db):
    from data import audit

    first = accounts.create_first_admin(db, "root", "a-long-password")
    assert first.is_admin and not accounts.needs_first_admin(db)
    [made] = audit.recent(db)  # the trail starts with its first admin (it began with the imports before)
    assert (made["who"], made["action"], made["target"]) == ("the set-up link (first admin)", "create account", "root")
    with pytest.raises(accounts.AuthError, match="exists already"):
        accounts.create_first_admin(db, "intruder", "a-long-password")
    second = admin(db, "second")
    accounts.set_disabled(db, second, "root", True)
    db.execute("UPDATE annotators SET disabled = 1")  # every admin disabled: still no first-admin form
    db.conn.commit()
    assert not accounts.needs_first_admin(db)
    with pytest.raises(accounts.AuthError, match="exists already"):
        accounts.create_first_admin(db, "intruder", "a-long-password")
    assert [u["name"] for u in accounts.list_users(db)] == ["root", "second"]


def test_no_admin_can_disable_or_demote_themselves_or_the_last_enabled_admin(db):
    root = admin(db)
    for action in (lambda: accounts.set_disabled(db, root, "root", True), lambda: accounts.set_role(db, root, "root", "annotator")):
        with pytest.raises(accounts.AuthError, match="your own account"):
            action()
    other = admin(db, "other")
    accounts.set_disabled(db, other, "root", True)  # two admins: one may disable the other
    with pytest.raises(accounts.AuthError, match="your own account"):
        accounts.set_disabled(db, other, "other", True)
    accounts.set_disabled(db, other, "root", False)
    root = accounts.active_user(db, "root")  # disabling ended root's sessions: this is a new log-in
    accounts.set_role(db, root, "other", "annotator")
    with pytest.raises(accounts.AuthError, match="last enabled admin"):
        accounts.set_disabled(db, None, "root", True)  # no session (a script): still refused
    assert accounts.active_user(db, "root").is_admin


@pytest.mark.parametrize("change", ["disable", "reset", "role"])
def test_disabling_resetting_or_changing_the_role_ends_older_sessions(db, change):
    root = admin(db)
    annotator = accounts.create_user(db, "ann", "a-long-password")
    session = accounts.authenticate(db, "ann", "a-long-password")
    assert accounts.session_user(db, session.id, session.epoch) == session
    {"disable": lambda: accounts.set_disabled(db, root, "ann", True),
     "reset": lambda: accounts.reset_password(db, root, "ann", "another-password"),
     "role": lambda: accounts.set_role(db, root, "ann", "admin")}[change]()
    assert accounts.session_user(db, session.id, session.epoch) is None
    if change != "disable":
        fresh = accounts.authenticate(db, "ann", "another-password" if change == "reset" else "a-long-password")
        assert accounts.session_user(db, fresh.id, fresh.epoch) is not None and fresh.id == annotator.id


def test_names_from_an_import_are_disabled_accounts_that_single_sign_on_cannot_use(db):
    row = {"prompt": "p", "completions": ["a", "b"], "ranking": [[0], [1]], "annotator": "contractor@vendor.example"}
    importing.import_rankings(db, importing.parse_rankings((__import__("json").dumps(row) + "\n").encode()))
    assert accounts.active_user(db, "contractor@vendor.example") is None
    [imported] = [u for u in accounts.list_users(db) if u["name"] == "contractor@vendor.example"]
    assert imported["origin"] == "import" and imported["disabled"] and not imported["has_password"]
    with pytest.raises(accounts.AuthError, match="wrong name or password"):
        accounts.authenticate(db, "contractor@vendor.example", "")


def test_an_admin_can_turn_an_imported_name_into_an_account(db):
    annotation.annotator_id(db, "legacy-name")
    user = accounts.create_user(db, "legacy-name", "a-long-password")
    assert accounts.authenticate(db, "legacy-name", "a-long-password").id == user.id


def test_the_migration_disables_password_less_annotators(db_path):
    import sqlite3

    from sqlite_utils import Database

    from data.migrations import migrations

    old = Database(sqlite3.connect(db_path))
    migrations.apply(old, stop_before="m0006_team_safety")
    old.execute("INSERT INTO annotators (name, created_at) VALUES ('ranked-before-accounts', 'x')")
    old.execute("INSERT INTO annotators (name, role, password_hash, created_at) VALUES ('sso-admin', 'admin', NULL, 'x')")
    old.conn.commit()
    migrations.apply(old)
    rows = dict(((n, (d, o)) for n, d, o in old.execute("SELECT name, disabled, origin FROM annotators")))
    assert rows == {"ranked-before-accounts": (1, "legacy"), "sso-admin": (0, "account")}


def test_repeated_failures_back_off_per_name_whatever_the_password(db, monkeypatch):
    accounts.create_user(db, "ann", "a-long-password")
    for _ in range(accounts.FREE_FAILURES["name"]):
        with pytest.raises(accounts.AuthError, match="wrong name or password"):
            accounts.authenticate(db, "ann", "guess")
    with pytest.raises(accounts.TooManyFailures, match="try again in 1 s"):
        accounts.authenticate(db, "ann", "a-long-password")  # even the right password waits
    time.sleep(1.1)
    with pytest.raises(accounts.AuthError):
        accounts.authenticate(db, "ann", "guess")
    with pytest.raises(accounts.TooManyFailures, match="try again in 2 s"):
        accounts.authenticate(db, "ann", "a-long-password")
    monkeypatch.setattr(accounts, "now", lambda: "2999-01-01T00:00:00.000+00:00")
    assert accounts.authenticate(db, "ann", "a-long-password").name == "ann"  # and a success clears the count
    assert db.execute("SELECT COUNT(*) FROM login_failures WHERE key = 'name:ann'").fetchone()[0] == 0


def test_one_client_guessing_many_names_is_paused_too(db):
    for i in range(accounts.FREE_FAILURES["client"]):
        with pytest.raises(accounts.AuthError):
            accounts.authenticate(db, f"name-{i}", "guess", client="203.0.113.9")
    with pytest.raises(accounts.TooManyFailures):
        accounts.authenticate(db, "another-name", "guess", client="203.0.113.9")
    with pytest.raises(accounts.AuthError, match="wrong name or password"):
        accounts.authenticate(db, "another-name", "guess", client="198.51.100.7")  # other clients are not


def test_unknown_and_known_names_get_the_same_answer_in_the_same_time(db):
    accounts.create_user(db, "known", "a-long-password")

    def seconds(name: str) -> float:
        started = time.perf_counter()
        with pytest.raises(accounts.AuthError) as refused:
            accounts.authenticate(db, name, "wrong-password")
        db.execute("DELETE FROM login_failures")
        db.conn.commit()
        assert str(refused.value) == "wrong name or password"
        return time.perf_counter() - started

    known = statistics.median(seconds("known") for _ in range(5))
    unknown = statistics.median(seconds("unknown-name") for _ in range(5))
    assert 0.5 < unknown / known < 2, (known, unknown)


def test_an_imported_ranking_never_earns_a_local_account_credit(db):
    import json

    from data import export

    ann = accounts.create_user(db, "ann", "a-long-password")
    row = {"prompt": "p", "completions": ["a", "b"], "ranking": [[0], [1]], "annotator": "ann"}
    for _ in range(2):  # a foreign file naming a local account, imported twice
        importing.import_rankings(db, importing.parse_rankings((json.dumps(row) + "\n").encode()))
    assert db.execute("SELECT COUNT(*) FROM rankings WHERE annotator_id = ?", [ann.id]).fetchone()[0] == 0
    [stored] = db.query("SELECT a.name, a.disabled FROM rankings r JOIN annotators a ON a.id = r.annotator_id")
    assert stored == {"name": "ann (imported)", "disabled": 1}
    item_id = db.execute("SELECT id FROM items").fetchone()[0]  # ann ranks it herself; this store's export, imported again:
    annotation.submit_ranking(db, item_id, ann.id, [[1], [0]], [0, 1])  # already present, under the same account
    own = export.export_bytes(db, "rankings", "jsonl", export.ExportFilter(annotators=["ann"]))
    assert importing.import_rankings(db, importing.parse_rankings(own))["already_present"] == 1


def test_a_change_raced_by_a_demotion_is_refused_inside_its_transaction(db):
    root = admin(db)
    admin(db, "other")
    stale = accounts.authenticate(db, "other", "a-long-password")  # the click was already on its way...
    accounts.set_role(db, root, "other", "annotator")  # ...when another admin demoted "other"
    for change in (lambda: accounts.create_user(db, "sneaky", "a-long-password", role="admin", actor=stale),
                   lambda: accounts.set_disabled(db, stale, "root", True),
                   lambda: accounts.reset_password(db, stale, "root", "a-new-password")):
        with pytest.raises(accounts.AuthError, match="no longer an admin"):
            change()
    assert accounts.active_user(db, "sneaky") is None and accounts.authenticate(db, "root", "a-long-password")


@pytest.mark.parametrize("change", ["log out", "disable", "reset", "role", "expiry"])
def test_a_remembered_session_resumes_until_log_out_an_account_change_or_its_expiry(db, change, monkeypatch):
    root = admin(db)
    accounts.create_user(db, "ann", "a-long-password")
    ann = accounts.authenticate(db, "ann", "a-long-password")
    token = accounts.open_session(db, ann)
    assert accounts.resume_session(db, token) == ann and accounts.resume_session(db, token + "x") is None
    assert db.execute("SELECT COUNT(*) FROM sessions WHERE token_hash = ?", [token]).fetchone()[0] == 0  # only its hash
    {"log out": lambda: accounts.end_session(db, token),
     "disable": lambda: accounts.set_disabled(db, root, "ann", True),
     "reset": lambda: accounts.reset_password(db, root, "ann", "another-password"),
     "role": lambda: accounts.set_role(db, root, "ann", "reviewer"),
     "expiry": lambda: monkeypatch.setattr(accounts, "now", lambda: "2999-01-01T00:00:00.000+00:00")}[change]()
    assert accounts.resume_session(db, token) is None


def test_the_reviewer_role_sits_between_annotator_and_admin(db_path):
    import sqlite3

    from sqlite_utils import Database

    from data.migrations import migrations

    old = Database(sqlite3.connect(db_path))  # a store from before reviewers: its CHECK knew two roles
    migrations.apply(old, stop_before="m0022_reviewers_and_sessions")
    old.execute("INSERT INTO annotators (name, role, created_at) VALUES ('root', 'admin', 'x')")
    old.conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        old.execute("INSERT INTO annotators (name, role, created_at) VALUES ('early', 'reviewer', 'x')")
    old.conn.rollback()
    migrations.apply(old)
    assert old.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reviewer = accounts.create_user(old, "rev", "a-long-password", role="reviewer")
    assert reviewer.can_review and reviewer.has_role("annotator") and not reviewer.has_role("admin")
    assert not accounts.User(9, "ann", "annotator").can_review and accounts.User(1, "root", "admin").has_role("reviewer")
    with pytest.raises(sqlite3.IntegrityError):
        old.execute("UPDATE annotators SET role = 'owner' WHERE name = 'rev'")  # the CHECK still holds


def test_log_in_back_off_cannot_be_raced_by_tries_sent_together(db_path):
    """Finding 3 of the third trust pass: 12 tries at once (11 wrong, then the right one) used to all reach scrypt."""
    import threading

    from data.store import open_db

    accounts.create_user(open_db(db_path), "target", "the-right-password")
    answers, start = [], threading.Barrier(12)

    def attempt(password: str) -> None:
        own = open_db(db_path)
        start.wait()
        try:
            accounts.authenticate(own, "target", password)
            answers.append("in")
        except accounts.TooManyFailures:
            answers.append("throttled")
        except accounts.AuthError:
            answers.append("wrong")

    threads = [threading.Thread(target=attempt, args=(p,)) for p in [f"guess-{i:02d}-xx" for i in range(11)] + ["the-right-password"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers.count("throttled") >= 12 - accounts.FREE_FAILURES["name"] and answers.count("wrong") <= accounts.FREE_FAILURES["name"]


@pytest.mark.parametrize("peer, forwarded, trusted, client", [
    ("10.0.0.5", "203.0.113.9", [], "10.0.0.5"),  # no proxy configured: the header is never read
    ("10.0.0.5", "203.0.113.9", ["10.0.0.5"], "203.0.113.9"),  # behind our proxy: each client counts alone
    ("10.0.0.5", "6.6.6.6, 203.0.113.9", ["10.0.0.5"], "203.0.113.9"),  # a client's own header entry is not believed
    ("10.0.0.5", "203.0.113.9, 10.0.1.2", ["10.0.0.0/16"], "203.0.113.9"),  # two proxies of ours
    ("198.51.100.7", "203.0.113.9", ["10.0.0.5"], "198.51.100.7"),  # a stranger sending the header gains nothing
    ("10.0.0.5", "not-an-address, 10.0.0.4", ["10.0.0.0/24"], "not-an-address"),
])
def test_behind_a_trusted_proxy_each_client_backs_off_alone(peer, forwarded, trusted, client):
    """Trust pass 3, finding 22: behind a reverse proxy every client shared one back-off (the proxy's address)."""
    assert accounts.client_address(peer, forwarded, trusted) == client


def test_the_trusted_proxies_come_from_the_server_only(monkeypatch, tmp_path):
    from data import secrets as data_secrets

    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('trusted_proxies = ["10.0.0.5"]\n')
    monkeypatch.setattr(data_secrets, "SECRETS_FILES", (secrets_file,))
    monkeypatch.delenv("RLHF_TRUSTED_PROXIES", raising=False)
    assert data_secrets.trusted_proxies() == ["10.0.0.5"]
    monkeypatch.setenv("RLHF_TRUSTED_PROXIES", "10.0.0.6, 10.1.0.0/16")
    assert data_secrets.trusted_proxies() == ["10.0.0.6", "10.1.0.0/16"]


def test_an_account_changes_its_own_password_with_the_current_one_and_its_other_sessions_end(db):
    from data import audit

    accounts.create_user(db, "ann", "a-long-password")
    here, elsewhere = accounts.authenticate(db, "ann", "a-long-password"), accounts.authenticate(db, "ann", "a-long-password")
    token = accounts.open_session(db, elsewhere)
    for current, new, refusal in (("wrong-password", "a-new-password", "current password is not right"),
                                  ("a-long-password", "short", "at least 8"),
                                  ("a-long-password", "a-long-password", "same as the current one")):
        with pytest.raises(accounts.AuthError, match=refusal):
            accounts.change_own_password(db, here, current, new)
    assert accounts.session_user(db, here.id, here.epoch) == here  # refusals change nothing
    epoch = accounts.change_own_password(db, here, "a-long-password", "a-new-password")
    assert epoch == here.epoch + 1 and accounts.resume_session(db, token) is None  # the other browser is logged out
    with pytest.raises(accounts.AuthError, match="wrong name or password"):
        accounts.authenticate(db, "ann", "a-long-password")
    assert accounts.authenticate(db, "ann", "a-new-password").epoch == epoch
    assert (audit.recent(db)[0]["who"], audit.recent(db)[0]["action"]) == ("ann", "change own password")
    with pytest.raises(accounts.AuthError, match="session has ended"):  # the old epoch: a click from an ended session
        accounts.change_own_password(db, here, "a-new-password", "a-third-password")


def test_guessing_the_current_password_backs_off_as_log_ins_do_and_sso_accounts_have_none(db):
    accounts.create_user(db, "ann", "a-long-password")
    ann = accounts.authenticate(db, "ann", "a-long-password")
    for _ in range(accounts.FREE_FAILURES["name"]):
        with pytest.raises(accounts.AuthError, match="not right"):
            accounts.change_own_password(db, ann, "guess", "a-new-password")
    with pytest.raises(accounts.TooManyFailures):
        accounts.change_own_password(db, ann, "a-long-password", "a-new-password")  # even the right one waits
    sso = accounts.create_user(db, "sso@example.com", None)
    assert not accounts.has_password(db, sso.id) and accounts.has_password(db, ann.id)
    with pytest.raises(accounts.AuthError, match="single sign-on"):
        accounts.change_own_password(db, sso, "", "a-new-password")
