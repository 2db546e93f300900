"""Keys and activations as this node last read them, for a short outage of the accounts database.

Every lookup reads the database while it answers (a revocation takes effect at once); what it read
is remembered. When the database cannot answer, a key or an activation read within `max_age`
seconds is taken as it was then, so known keys keep working through an outage; a revocation made
during one takes effect on this node within `max_age`. Anything not known here, or known for too
long, raises DatabaseUnavailable (the call is refused with a 503 and Retry-After, never a 401).
"""

from __future__ import annotations

import threading
import time

from .availability import DatabaseState, DatabaseUnavailable, is_database_fault
from .store import ApiKey, Store, hash_secret

MAX_AGE_SECONDS = 300.0
MAX_ENTRIES = 100_000


class RememberedAccess:
    def __init__(self, store: Store, state: DatabaseState, max_age: float = MAX_AGE_SECONDS):
        self.store = store
        self.state = state
        self.max_age = max_age
        self._keys: dict[str, tuple[ApiKey, float]] = {}
        self._activations: dict[str, tuple[frozenset[str], float]] = {}
        self._lock = threading.Lock()

    def authenticate(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        try:
            key = self.store.authenticate(secret)
        except Exception as exc:
            return self._remembered(self._keys, digest, exc)
        self.state.ok()
        with self._lock:
            if key is None:
                self._keys.pop(digest, None)  # revoked or unknown: never from memory
            else:
                self._remember(self._keys, digest, key)
        return key

    def activated_models(self, workspace_id: str) -> set[str]:
        try:
            models = self.store.activated_models(workspace_id)
        except Exception as exc:
            return set(self._remembered(self._activations, workspace_id, exc))
        self.state.ok()
        with self._lock:
            self._remember(self._activations, workspace_id, frozenset(models))
        return models

    def is_activated(self, workspace_id: str, model_id: str) -> bool:
        return model_id in self.activated_models(workspace_id)

    def _remember(self, table: dict, name: str, value) -> None:
        if len(table) >= MAX_ENTRIES:
            table.clear()
        table[name] = (value, time.monotonic())

    def _remembered(self, table: dict, name: str, exc: Exception):
        if not is_database_fault(exc):
            raise exc
        self.state.failed(exc)
        with self._lock:
            entry = table.get(name)
        if entry is None or time.monotonic() - entry[1] > self.max_age:
            raise DatabaseUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        return entry[0]
