"""Stored responses (OpenAI Responses protocol): kept per workspace for `previous_response_id` and
GET /responses/{id}, deletable, gone after the retention period (`[responses] retention_days`).

An expired response is never returned; the rows themselves are deleted by the next save after an
hour has passed since the last sweep, so no job is needed.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.engine import Engine

from .schema import stored_responses

SWEEP_EVERY_S = 3600.0


@dataclass(frozen=True)
class StoredResponse:
    response: dict  # as the client received it
    conversation: list[dict]  # chat messages up to and including the reply (without instructions)
    input_items: list[dict]  # the request's own input, as Responses items with ids


class StoredResponses:
    def __init__(self, engine: Engine, retention: timedelta):
        self.engine = engine
        self.retention = retention
        self._lock = threading.Lock()
        self._swept_at = 0.0

    def save(self, workspace_id: str, response: dict, conversation: list[dict], input_items: list[dict]) -> None:
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            conn.execute(insert(stored_responses).values(
                id=response["id"], workspace_id=workspace_id, created_at=now, expires_at=now + self.retention,
                response=json.dumps(response, ensure_ascii=False),
                conversation=json.dumps(conversation, ensure_ascii=False),
                input_items=json.dumps(input_items, ensure_ascii=False)))
        self._sweep()

    def get(self, workspace_id: str, response_id: str) -> StoredResponse | None:
        t = stored_responses.c
        with self.engine.connect() as conn:
            row = conn.execute(select(t.response, t.conversation, t.input_items)
                               .where(self._live(workspace_id, response_id))).first()
        if row is None:
            return None
        return StoredResponse(json.loads(row.response), json.loads(row.conversation), json.loads(row.input_items))

    def delete(self, workspace_id: str, response_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(stored_responses).where(self._live(workspace_id, response_id))).rowcount > 0

    def purge(self) -> int:
        """Delete every expired response; how many there were."""
        with self.engine.begin() as conn:
            return conn.execute(delete(stored_responses).where(
                stored_responses.c.expires_at <= datetime.now(timezone.utc))).rowcount

    @staticmethod
    def _live(workspace_id: str, response_id: str):
        t = stored_responses.c
        return and_(t.id == response_id, t.workspace_id == workspace_id, t.expires_at > datetime.now(timezone.utc))

    def _sweep(self) -> None:
        with self._lock:
            if time.monotonic() - self._swept_at < SWEEP_EVERY_S:
                return
            self._swept_at = time.monotonic()
        self.purge()
