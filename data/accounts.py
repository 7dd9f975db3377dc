"""Accounts and roles: admins, reviewers and annotators, passwords stored only as salted scrypt hashes.

Every session remembers the account's `session_epoch` it logged in under; disabling an account,
resetting its password or changing its role bumps the epoch, which ends every older session.
Failed log-ins back off exponentially, per name and per client, and cost the same time whether
or not the name exists.
"""

import datetime
import functools
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
from dataclasses import dataclass

from sqlite_utils import Database

from data import audit
from data.store import now, write_transaction

ROLES = ("admin", "reviewer", "annotator")  # each can do what the ones after it can
SESSION_HOURS = 12  # a log-in survives reloads for a working day
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 8
FREE_FAILURES = {"name": 5, "client": 20}  # failed log-ins before each further try has to wait
MAX_WAIT_S = 15 * 60
NAME_PATTERN = re.compile(r"[^\s\x00-\x1f][^\x00-\x1f]{0,199}")


class AuthError(ValueError):
    """A refused log-in or account change; the message can be shown as it is."""


class TooManyFailures(AuthError):
    """Log-ins for this name or client are paused for a while after repeated failures."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    epoch: int = 0  # the account's session epoch when this session logged in

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def can_review(self) -> bool:
        return self.role in ("admin", "reviewer")

    def has_role(self, role: str) -> bool:
        """At least `role`: an admin reviews and annotates, a reviewer annotates."""
        return ROLES.index(self.role) <= ROLES.index(role)


def hash_password(password: str) -> str:
    """'scrypt$n$r$p$salt$hash', with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2)
    return hmac.compare_digest(candidate.hex(), digest)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when a name is unknown, so that answering takes as long as for a known name."""
    return hash_password(secrets.token_hex(16))


def _check_new(name: str, password: str | None, role: str) -> str:
    name = name.strip()
    if role not in ROLES:
        raise AuthError(f"role must be one of {ROLES}, got {role!r}")
    if not NAME_PATTERN.fullmatch(name):
        raise AuthError("an account needs a name of 1 to 200 printable characters")
    if password is not None and len(password) < MIN_PASSWORD:
        raise AuthError(f"passwords need at least {MIN_PASSWORD} characters")
    return name


def create_user(db: Database, name: str, password: str | None, role: str = "annotator", actor: User | None = None) -> User:
    """A new account. Without a password it can only log in through single sign-on (name = e-mail).

    A name known only from an import or from before accounts existed becomes this account. `actor`: the
    admin asking (None from the CLI), re-checked inside the transaction.
    """
    name = _check_new(name, password, role)
    hashed = hash_password(password) if password is not None else None
    with write_transaction(db):
        require_admin(db, actor)
        existing = db.execute("SELECT id, password_hash, origin FROM annotators WHERE name = ?", [name]).fetchone()
        if existing and (existing[1] is not None or existing[2] == "account"):
            raise AuthError(f"an account named {name!r} exists already")
        if existing:
            db.execute("""UPDATE annotators SET role = ?, password_hash = ?, disabled = 0, origin = 'account',
                          session_epoch = session_epoch + 1 WHERE id = ?""", [role, hashed, existing[0]])
            audit.record(db, actor, "create account", name, {"role": role, "from": "a name known from imports"})
            return _user(db, existing[0])
        user_id = db.execute("INSERT INTO annotators (name, role, password_hash, origin, created_at) VALUES (?, ?, ?, 'account', ?)",
                             [name, role, hashed, now()]).lastrowid
        audit.record(db, actor, "create account", name, {"role": role, "sign-in": "password" if password else "single sign-on"})
    return _user(db, user_id)


def create_first_admin(db: Database, name: str, password: str) -> User:
    """The first admin of a new install; refused as soon as any admin account exists (even a disabled one)."""
    name = _check_new(name, password, "admin")
    hashed = hash_password(password)
    with write_transaction(db):
        if not needs_first_admin(db):
            raise AuthError("an admin account exists already: log in, or ask an admin for an account")
        if db.execute("SELECT 1 FROM annotators WHERE name = ?", [name]).fetchone():
            raise AuthError(f"the name {name!r} is taken: pick another")
        user_id = db.execute("INSERT INTO annotators (name, role, password_hash, origin, created_at) VALUES (?, 'admin', ?, 'account', ?)",
                             [name, hashed, now()]).lastrowid
        audit.record(db, None, "create account", name, {"role": "admin", "sign-in": "password"},
                     by="the set-up link (first admin)")
    return _user(db, user_id)


def needs_first_admin(db: Database) -> bool:
    """True only while the store has no admin account at all."""
    return db.execute("SELECT 1 FROM annotators WHERE role = 'admin'").fetchone() is None


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[str]) -> str | None:
    """The client a log-in's back-off counts against: the connection's peer, unless the peer is a trusted proxy; then
    the nearest address in X-Forwarded-For that is not one (read right to left: only trusted proxies append to it).

    >>> client_address("10.0.0.5", "203.0.113.9, 10.0.0.4", ["10.0.0.0/24"])
    '203.0.113.9'
    >>> client_address("198.51.100.7", "1.2.3.4", ["10.0.0.0/24"])  # not a proxy of ours: its header is not believed
    '198.51.100.7'
    """
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(address: str) -> bool:
        try:
            return any(ipaddress.ip_address(address) in network for network in networks)
        except ValueError:
            return False

    if peer is None or not is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def authenticate(db: Database, name: str, password: str, client: str | None = None) -> User:
    """The account for this name and password; the same answer, in the same time, for an unknown name."""
    name = name.strip()
    keys = [f"name:{name.casefold()}"] + ([f"client:{client}"] if client else [])
    with write_transaction(db):  # the try is counted before scrypt runs: tries sent together cannot all pass the check
        wait = seconds_to_wait(db, keys)
        if wait:
            raise TooManyFailures(f"too many failed log-ins: try again in {wait} s")
        _record_failure(db, keys)
    row = db.execute("SELECT id, password_hash, disabled FROM annotators WHERE name = ?", [name]).fetchone()
    if not verify_password(password, row[1] if row and row[1] else _dummy_hash()) or row is None or row[2]:
        raise AuthError("wrong name or password")  # a disabled account's right password learns nothing more
    with write_transaction(db):
        db.execute(f"DELETE FROM login_failures WHERE key IN ({', '.join('?' * len(keys))})", keys)
    return _user(db, row[0])


def seconds_to_wait(db: Database, keys: list[str]) -> int:
    """How long log-ins for these keys are paused (0: not at all)."""
    rows = db.execute(f"SELECT locked_until FROM login_failures WHERE key IN ({', '.join('?' * len(keys))})", keys)
    latest = max((row[0] for row in rows), default=None)
    if latest is None:
        return 0
    left = (datetime.datetime.fromisoformat(latest) - datetime.datetime.fromisoformat(now())).total_seconds()
    return max(0, math.ceil(left))


def backoff_seconds(failures: int, free: int) -> float:
    """Exponential back-off: nothing for the first `free` failures, then 1, 2, 4 ... s, at most 15 min.

    >>> [backoff_seconds(n, 5) for n in (4, 5, 6, 7)], backoff_seconds(40, 5)
    ([0, 1, 2, 4], 900)
    """
    return 0 if failures < free else min(MAX_WAIT_S, 2 ** (failures - free))


def _record_failure(db: Database, keys: list[str]) -> None:
    stamp = datetime.datetime.fromisoformat(now())
    with write_transaction(db):
        for key in keys:
            row = db.execute("SELECT failures FROM login_failures WHERE key = ?", [key]).fetchone()
            failures = (row[0] if row else 0) + 1
            until = stamp + datetime.timedelta(seconds=backoff_seconds(failures, FREE_FAILURES[key.split(":")[0]]))
            db.execute("INSERT OR REPLACE INTO login_failures (key, failures, locked_until, last_at) VALUES (?, ?, ?, ?)",
                       [key, failures, until.isoformat(timespec="milliseconds"), stamp.isoformat(timespec="milliseconds")])


def _user(db: Database, user_id: int) -> User:
    row = db.execute("SELECT id, name, role, session_epoch FROM annotators WHERE id = ?", [user_id]).fetchone()
    return User(*row)


def session_user(db: Database, user_id: int, epoch: int) -> User | None:
    """The account a session logged in as, if it is still enabled and nothing ended that session since."""
    row = db.execute("SELECT id, name, role, session_epoch FROM annotators WHERE id = ? AND disabled = 0", [user_id]).fetchone()
    return User(*row) if row and row[3] == epoch else None


def active_user(db: Database, name: str) -> User | None:
    """The enabled account with this name, or None."""
    row = db.execute("SELECT id, name, role, session_epoch FROM annotators WHERE name = ? AND disabled = 0", [name]).fetchone()
    return None if row is None else User(*row)


def single_sign_on_user(db: Database, email: str) -> User | None:
    """The enabled account a single sign-on e-mail maps to: one an admin made without a password for it.

    An account with a password is never taken over by an identity provider's e-mail claim.
    """
    row = db.execute("""SELECT id, name, role, session_epoch FROM annotators
                        WHERE name = ? AND disabled = 0 AND password_hash IS NULL AND origin = 'account'""", [email]).fetchone()
    return None if row is None else User(*row)


def set_disabled(db: Database, actor: User | None, name: str, disabled: bool) -> None:
    """Disable (ending every session of the account) or enable an account."""
    with write_transaction(db):
        require_admin(db, actor)
        target = _target(db, name)
        if disabled:
            _refuse_losing_admin(db, actor, target, "disable")
        db.execute("UPDATE annotators SET disabled = ?, session_epoch = session_epoch + ? WHERE id = ?",
                   [int(disabled), int(disabled), target["id"]])
        audit.record(db, actor, "disable account" if disabled else "enable account", name)


def set_role(db: Database, actor: User | None, name: str, role: str) -> None:
    if role not in ROLES:
        raise AuthError(f"role must be one of {ROLES}, got {role!r}")
    with write_transaction(db):
        require_admin(db, actor)
        target = _target(db, name)
        if role != "admin":
            _refuse_losing_admin(db, actor, target, "demote")
        db.execute("UPDATE annotators SET role = ?, session_epoch = session_epoch + 1 WHERE id = ? AND role != ?",
                   [role, target["id"], role])
        audit.record(db, actor, "change role", name, {"from": target["role"], "to": role})


def reset_password(db: Database, actor: User, name: str, password: str) -> int:
    """A new password; every session of the account ends. Returns the account's new epoch."""
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"passwords need at least {MIN_PASSWORD} characters")
    hashed = hash_password(password)
    with write_transaction(db):
        require_admin(db, actor)
        target = _target(db, name)
        db.execute("UPDATE annotators SET password_hash = ?, origin = 'account', session_epoch = session_epoch + 1 WHERE id = ?",
                   [hashed, target["id"]])
        audit.record(db, actor, "reset password", name)
        return _user(db, target["id"]).epoch


def change_own_password(db: Database, user: User, current: str, new: str, client: str | None = None) -> int:
    """The asking account's new password, given its current one (checked, and counted against log-in back-off as a
    log-in try is, so the form cannot guess it faster than the log-in form). Every other session of the account ends;
    returns the new epoch for the asking one to keep."""
    if not has_password(db, user.id):
        raise AuthError("your account signs in through single sign-on: it has no password here to change")
    try:  # first, so that a wrong one is said (and counted) whatever the new one is
        checked = authenticate(db, user.name, current, client)
    except TooManyFailures:
        raise
    except AuthError:  # authenticate's "wrong name or password": here only the password can be wrong
        raise AuthError("your current password is not right") from None
    if len(new) < MIN_PASSWORD:
        raise AuthError(f"passwords need at least {MIN_PASSWORD} characters")
    if new == current:
        raise AuthError("the new password is the same as the current one")
    hashed = hash_password(new)
    with write_transaction(db):
        require_role(db, user, "annotator")  # still this session's account, enabled, not reset meanwhile
        if checked.id != user.id:
            raise AuthError("your session has ended: log in again")
        db.execute("UPDATE annotators SET password_hash = ?, session_epoch = session_epoch + 1 WHERE id = ?", [hashed, user.id])
        audit.record(db, user, "change own password", user.name)
        return _user(db, user.id).epoch


def has_password(db: Database, user_id: int) -> bool:
    """Whether the account logs in with a password (not only through single sign-on)."""
    return db.execute("SELECT password_hash IS NOT NULL FROM annotators WHERE id = ?", [user_id]).fetchone()[0] == 1


def require_admin(db: Database, actor: User | None) -> None:
    """Inside a change's own transaction: `actor` (None: the command line or a job) is still an enabled admin."""
    require_role(db, actor, "admin")


def require_role(db: Database, actor: User | None, role: str) -> None:
    """Inside the change's own transaction: the asking session is still an enabled account of at least `role`, so a
    change made meanwhile (disabled, demoted, reset) cannot be raced by a click already on its way."""
    if actor is not None:
        current = session_user(db, actor.id, actor.epoch)
        if current is None or not current.has_role(role):
            raise AuthError(f"your session has ended or you are no longer {'an' if role[0] in 'aeiou' else 'a'} {role}: "
                            "log in again")


def open_session(db: Database, user: User, hours: float = SESSION_HOURS) -> str:
    """A token the browser keeps so that a reload stays logged in; the store keeps only its hash."""
    token = secrets.token_urlsafe(32)
    stamp = datetime.datetime.fromisoformat(now())
    expires = (stamp + datetime.timedelta(hours=hours)).isoformat(timespec="milliseconds")
    with write_transaction(db):
        db.execute("DELETE FROM sessions WHERE expires_at < ?", [stamp.isoformat(timespec="milliseconds")])
        db.execute("INSERT INTO sessions (token_hash, annotator_id, epoch, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                   [_token_hash(token), user.id, user.epoch, stamp.isoformat(timespec="milliseconds"), expires])
    return token


def resume_session(db: Database, token: str) -> User | None:
    """The account of an unexpired session token, if nothing ended that session since (log-out, disabling, a password
    reset, a role change)."""
    if not token or len(token) > 100:
        return None
    row = db.execute("SELECT annotator_id, epoch FROM sessions WHERE token_hash = ? AND expires_at > ?",
                     [_token_hash(token), now()]).fetchone()
    return session_user(db, *row) if row else None


def end_session(db: Database, token: str) -> None:
    """Log-out: the token stops working at once, in every tab that holds it."""
    with write_transaction(db):
        db.execute("DELETE FROM sessions WHERE token_hash = ?", [_token_hash(token)])


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _target(db: Database, name: str) -> dict:
    row = next(iter(db.query("SELECT id, name, role, disabled FROM annotators WHERE name = ?", [name])), None)
    if row is None:
        raise AuthError(f"there is no account named {name!r}")
    return row


def _refuse_losing_admin(db: Database, actor: User | None, target: dict, action: str) -> None:
    if actor is not None and target["id"] == actor.id:
        raise AuthError(f"you cannot {action} your own account: ask another admin")
    if target["role"] == "admin" and not target["disabled"]:
        others = db.execute("SELECT COUNT(*) FROM annotators WHERE role = 'admin' AND disabled = 0 AND id != ?",
                            [target["id"]]).fetchone()[0]
        if not others:
            raise AuthError(f"cannot {action} the last enabled admin")


def list_users(db: Database) -> list[dict]:
    return list(db.query(
        """SELECT a.name, a.role, a.disabled, a.password_hash IS NOT NULL AS has_password, a.origin,
                  (SELECT COUNT(*) FROM rankings r WHERE r.annotator_id = a.id) AS submissions, a.created_at
           FROM annotators a ORDER BY a.origin != 'account', a.role, a.name"""))
