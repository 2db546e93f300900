"""Requests and tokens per minute, per key and per workspace, counted in the shared database so
that every server process on it enforces the same limits.

Fixed one-minute windows: a request counts when admitted; its tokens count when it finishes. A
request is refused (429 Throttling.RateQuota, Retry-After: seconds to the next window) when its
scope already had its requests or tokens for this minute.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from ..config import Limits, LimitsConfig  # noqa: F401 (the settings it enforces)
from ..errors import RateQuota
from .schema import rate_windows


class RateLimiter:
    """Counts in the database; while the database cannot count (it is away), each node counts on its
    own (`_local`), so limits still hold, per node, through an outage."""

    def __init__(self, engine: Engine, config: LimitsConfig):
        self.engine = engine
        self.config = config
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._calls = 0
        self._local: dict[tuple[str, int], list[int]] = {}  # (scope, window) -> [requests, tokens]
        self._lock = threading.Lock()

    def _scopes(self, key_id: str, workspace_id: str) -> list[tuple[str, Limits]]:
        out = []
        if self.config.key.rpm or self.config.key.tpm:
            out.append((f"key:{key_id}", self.config.key))
        ws = self.config.for_workspace(workspace_id)
        if ws.rpm or ws.tpm:
            out.append((f"workspace:{workspace_id}", ws))
        return out

    def admit(self, key_id: str, workspace_id: str) -> None:
        scopes = self._scopes(key_id, workspace_id)
        if not scopes:
            return
        now = time.time()
        window = int(now // 60)
        retry_after = str(max(1, 60 - int(now % 60)))
        try:
            counts = self._count_requests(scopes, window)
        except OperationalError:  # the database is away: this node counts alone meanwhile
            counts = self._count_locally(scopes, window, requests=1)
        for (scope, limits), (requests, tokens) in zip(scopes, counts):
            kind = scope.split(":", 1)[0]
            if limits.rpm and requests > limits.rpm:
                raise RateQuota(f"Requests rate limit exceeded for this {kind}: {limits.rpm} per minute.",
                                headers={"Retry-After": retry_after})
            if limits.tpm and tokens >= limits.tpm:
                raise RateQuota(f"Tokens rate limit exceeded for this {kind}: {limits.tpm} per minute.",
                                headers={"Retry-After": retry_after})

    def _count_requests(self, scopes: list[tuple[str, Limits]], window: int) -> list[tuple[int, int]]:
        counts = []
        with self.engine.begin() as conn:
            for scope, _ in scopes:
                stmt = self._insert(rate_windows).values(scope=scope, window=window, requests=1, tokens=0)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["scope", "window"], set_={"requests": rate_windows.c.requests + 1}
                ).returning(rate_windows.c.requests, rate_windows.c.tokens)
                counts.append(tuple(conn.execute(stmt).one()))
            self._calls += 1
            if self._calls % 1000 == 0:  # old windows are of no further use
                conn.execute(delete(rate_windows).where(rate_windows.c.window < window - 60))
        return counts

    def _count_locally(self, scopes: list[tuple[str, Limits]], window: int, *, requests: int = 0,
                       tokens: int = 0) -> list[tuple[int, int]]:
        with self._lock:
            for old in [k for k in self._local if k[1] < window]:
                del self._local[old]
            out = []
            for scope, _ in scopes:
                count = self._local.setdefault((scope, window), [0, 0])
                count[0] += requests
                count[1] += tokens
                out.append((count[0], count[1]))
            return out

    def add_tokens(self, key_id: str, workspace_id: str, tokens: int) -> None:
        scopes = [(s, limits) for s, limits in self._scopes(key_id, workspace_id) if limits.tpm]
        if not scopes or not tokens:
            return
        window = int(time.time() // 60)
        try:
            with self.engine.begin() as conn:
                for scope, _ in scopes:
                    stmt = self._insert(rate_windows).values(scope=scope, window=window, requests=0, tokens=tokens)
                    conn.execute(stmt.on_conflict_do_update(
                        index_elements=["scope", "window"], set_={"tokens": rate_windows.c.tokens + tokens}))
        except OperationalError:
            self._count_locally(scopes, window, tokens=tokens)
