"""Console users and their sessions.

Passwords are hashed with Argon2id (argon2-cffi: the memory-hard scheme OWASP recommends; salts and
parameters live in the hash). Five failed sign-ins in a row lock the account for 15 minutes. A
session is a random token in an HttpOnly cookie; the database keeps only its SHA-256, with the
session's CSRF token and its expiry.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .schema import console_sessions, console_users
from .store import _now, _utc, hash_secret as _digest

ROLES = ("owner", "member")
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
_hasher = PasswordHasher()


class UserError(Exception):
    pass


@dataclass(frozen=True)
class ConsoleUser:
    username: str
    role: str
    workspace_id: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


@dataclass(frozen=True)
class Session:
    user: ConsoleUser
    csrf_token: str




def new_password() -> str:
    return secrets.token_urlsafe(12)


class ConsoleUsers:
    def __init__(self, engine: Engine):
        self.engine = engine

    # -- users ------------------------------------------------------------------------------------

    def add(self, username: str, password: str, role: str, workspace_id: str) -> ConsoleUser:
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise UserError("a username is 1-64 letters, digits, '-', '_' or '.'")
        if len(password) < 10:
            raise UserError("a password has at least 10 characters")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(console_users).values(
                    username=username, password_hash=_hasher.hash(password), role=role, workspace_id=workspace_id,
                    created_at=_now(), failed_logins=0))
        except IntegrityError:
            raise UserError(f"user {username!r} exists") from None
        return ConsoleUser(username, role, workspace_id)

    def any_owner(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(console_users.c.username).where(console_users.c.role == "owner")).first() \
                is not None

    def list(self) -> list[ConsoleUser]:
        t = console_users.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.username, t.role, t.workspace_id).order_by(t.username)).all()
        return [ConsoleUser(*r) for r in rows]

    def remove(self, username: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.username == username))
            return conn.execute(delete(console_users).where(console_users.c.username == username)).rowcount > 0

    def set_password(self, username: str, password: str) -> None:
        if len(password) < 10:
            raise UserError("a password has at least 10 characters")
        with self.engine.begin() as conn:
            n = conn.execute(update(console_users).where(console_users.c.username == username).values(
                password_hash=_hasher.hash(password), failed_logins=0, locked_until=None)).rowcount
            conn.execute(delete(console_sessions).where(console_sessions.c.username == username))
        if not n:
            raise UserError(f"no user {username!r}")

    # -- signing in -------------------------------------------------------------------------------

    def sign_in(self, username: str, password: str) -> tuple[str, Session] | str:
        """A new session (its cookie token and itself), or why not: one message for an unknown user
        and a wrong password alike; another for a locked account."""
        t = console_users.c
        with self.engine.connect() as conn:
            row = conn.execute(select(console_users).where(t.username == username)).first()
        if row is None:
            _hasher.hash(password)  # the same work as for a real user: no timing difference
            return "Wrong username or password."
        locked = _utc(row.locked_until)
        if locked is not None and locked > _now():
            return "Too many failed sign-ins: this account is locked for a while. Try again later."
        try:
            _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            failures = row.failed_logins + 1
            values = {"failed_logins": failures}
            if failures >= MAX_FAILURES:
                values = {"failed_logins": 0, "locked_until": _now() + LOCKOUT}
            with self.engine.begin() as conn:
                conn.execute(update(console_users).where(t.username == username).values(**values))
            return "Wrong username or password."
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(update(console_users).where(t.username == username).values(failed_logins=0,
                                                                                     locked_until=None))
            conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= _now()))
            conn.execute(insert(console_sessions).values(token_hash=_digest(token), username=username,
                                                         csrf_token=csrf, expires_at=_now() + SESSION_LIFETIME))
        return token, Session(ConsoleUser(row.username, row.role, row.workspace_id), csrf)

    def session(self, token: str) -> Session | None:
        s, u = console_sessions.c, console_users.c
        with self.engine.connect() as conn:
            row = conn.execute(select(u.username, u.role, u.workspace_id, s.csrf_token, s.expires_at)
                               .join_from(console_sessions, console_users, s.username == u.username)
                               .where(s.token_hash == _digest(token))).first()
        if row is None or _utc(row.expires_at) <= _now():
            return None
        return Session(ConsoleUser(row.username, row.role, row.workspace_id), row.csrf_token)

    def sign_out(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == _digest(token)))
