"""Whether the accounts database answers, as the calls find it: every lookup and write that
reaches it says so, and a failure that is the database's (it is down, unreachable, or its disk is
full) is told apart from a mistake of ours.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, ProgrammingError


class DatabaseUnavailable(Exception):
    """The accounts database cannot be reached or written, and nothing on this node stands in."""


def is_database_fault(exc: BaseException) -> bool:
    """A fault of the database (down, unreachable, disk full), not of the statement."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated and not isinstance(
        exc, (IntegrityError, ProgrammingError))


class DatabaseState:
    """Up or down, since when, and why; thread-safe enough for plain flags."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.up = True
        self.last_error: str | None = None
        self.down_since: float | None = None
        self._lock = threading.Lock()

    def ok(self) -> None:
        if not self.up:
            with self._lock:
                self.up, self.last_error, self.down_since = True, None, None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.up:
                self.down_since = time.time()
            self.up = False
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"

    def probe(self) -> bool:
        """Blocking: whether the database answers a query now."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 (any failure to answer is the answer)
            self.failed(exc)
            return False
        self.ok()
        return True

    def as_json(self) -> dict:
        return {"up": self.up, "down_since": self.down_since, "last_error": self.last_error}
