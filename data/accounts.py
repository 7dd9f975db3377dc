"""Accounts and roles: admins and annotators, passwords stored only as salted scrypt hashes."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlite_utils import Database

from data.store import now, write_transaction

ROLES = ("admin", "annotator")
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 8


class AuthError(ValueError):
    """A refused log-in or account change; the message can be shown as it is."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


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


def create_user(db: Database, name: str, password: str | None, role: str = "annotator") -> User:
    """A new account. Without a password it can only log in through single sign-on (name = e-mail)."""
    name = name.strip()
    if role not in ROLES:
        raise AuthError(f"role must be one of {ROLES}, got {role!r}")
    if not name:
        raise AuthError("an account needs a name")
    if password is not None and len(password) < MIN_PASSWORD:
        raise AuthError(f"passwords need at least {MIN_PASSWORD} characters")
    with write_transaction(db):
        existing = db.execute("SELECT id, password_hash FROM annotators WHERE name = ?", [name]).fetchone()
        if existing and existing[1] is not None:
            raise AuthError(f"an account named {name!r} exists already")
        hashed = hash_password(password) if password is not None else None
        if existing:  # a name that ranked before accounts existed becomes an account
            db.execute("UPDATE annotators SET role = ?, password_hash = ?, disabled = 0 WHERE id = ?", [role, hashed, existing[0]])
            return User(existing[0], name, role)
        user_id = db.execute("INSERT INTO annotators (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                             [name, role, hashed, now()]).lastrowid
    return User(user_id, name, role)


def authenticate(db: Database, name: str, password: str) -> User:
    row = db.execute("SELECT id, name, role, password_hash, disabled FROM annotators WHERE name = ?", [name.strip()]).fetchone()
    if row is None or not verify_password(password, row[3]):
        raise AuthError("wrong name or password")
    if row[4]:
        raise AuthError("this account is disabled: ask an admin")
    return User(row[0], row[1], row[2])


def active_user(db: Database, name: str) -> User | None:
    """The enabled account with this name (for single sign-on and to re-check a session), or None."""
    row = db.execute("SELECT id, name, role FROM annotators WHERE name = ? AND disabled = 0", [name]).fetchone()
    return None if row is None else User(*row)


def has_admin(db: Database) -> bool:
    return db.execute("SELECT 1 FROM annotators WHERE role = 'admin' AND disabled = 0").fetchone() is not None


def set_disabled(db: Database, name: str, disabled: bool) -> None:
    with write_transaction(db):
        db.execute("UPDATE annotators SET disabled = ? WHERE name = ?", [int(disabled), name])


def reset_password(db: Database, name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"passwords need at least {MIN_PASSWORD} characters")
    with write_transaction(db):
        db.execute("UPDATE annotators SET password_hash = ? WHERE name = ?", [hash_password(password), name])


def list_users(db: Database) -> list[dict]:
    return list(db.query(
        """SELECT a.name, a.role, a.disabled, a.password_hash IS NOT NULL AS has_password,
                  (SELECT COUNT(*) FROM rankings r WHERE r.annotator_id = a.id AND r.skipped = 0) AS rankings, a.created_at
           FROM annotators a ORDER BY a.role, a.name"""))
