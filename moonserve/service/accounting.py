"""Per authenticated call: rate limits before it, its ledger record after it.

`call.Call` calls `admit` first and `record` exactly once, however the call ends.

When the accounts database cannot take a record, the record goes to the node's journal (fsync'd,
accounts/journal.py) and `watch` delivers it once the database answers again, also after a restart
of the node. While the database is away and the journal cannot be written either (a full disk),
`admit` refuses new calls with a 503 before anything is computed: nothing would bill them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass

from ..accounts.availability import DatabaseState, is_database_fault
from ..accounts.journal import JournalUnwritable, LedgerJournal, has_room
from ..accounts.ledger import Ledger
from ..accounts.limits import RateLimiter
from ..accounts.store import ApiKey, Store
from ..catalog import card as find_card
from ..config import Config
from ..engines.protocol import Usage
from ..errors import ModelUnavailable
from .billing import Cost, cost_of, price_of, to_nanos


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What a call's ledger record says about the call besides its usage."""

    request_id: str
    key: ApiKey
    model: str
    stream: bool
    protocol: str
    started: float  # time.monotonic() at its start

log = logging.getLogger("moonserve.ledger")

WATCH_SECONDS = 2.0  # how often, while the database is away or records wait, it is tried again


class Accounting:
    def __init__(self, config: Config, store: Store, database: DatabaseState):
        self.config = config
        self.database = database
        self.ledger = Ledger(store.engine) if config.billing.ledger else None
        self.limiter = RateLimiter(store.engine, config.limits)
        self.journal = LedgerJournal(config.home / "ledger-journal.jsonl")
        self.ledger_writable = True  # whether the last record (or delivery) reached the database
        url = config.database_url
        self.sqlite_folder = Path(url.split("///", 1)[-1]).parent if url.startswith("sqlite") and "///" in url else None

    @property
    def can_bill(self) -> bool:
        """Whether a call's record would be kept: by the database (a SQLite file needs room on its
        disk), else by the journal."""
        if self.ledger is None:
            return True
        database = self.ledger_writable and (self.sqlite_folder is None or has_room(self.sqlite_folder))
        return database or self.journal.usable

    def admit(self, key: ApiKey) -> None:
        """Raises RateQuota (429) when the key or its workspace is over its limits, and
        ModelUnavailable (503) when nothing could bill the call."""
        if not self.can_bill:
            raise ModelUnavailable("The accounts database cannot record usage and neither can this node's journal "
                                   "(is its disk full?); retry later", headers={"Retry-After": "5"})
        self.limiter.admit(key.id, key.workspace_id)

    def write(self, row: dict) -> None:
        """The record into the ledger, else into the journal (JournalUnwritable if neither takes it).
        While records wait in the journal, new ones join them there, so they arrive in order."""
        if not self.journal.pending:
            try:
                self.ledger.record(row)
                self.ledger_writable = True
                return
            except Exception as exc:
                if not is_database_fault(exc):
                    raise
                self.ledger_writable = False
                self.database.failed(exc)
                log.warning("ledger: the database did not take request %s's record (%s); journaled",
                            row["request_id"], self.database.last_error)
        self.journal.append(row)

    async def watch(self) -> None:
        """While records wait in the journal or nothing could bill a call: try again every few
        seconds, and deliver the journal once the database takes it."""
        if self.ledger is None:
            return
        while True:
            try:
                await asyncio.to_thread(self.catch_up)
            except Exception:  # never let the watch die
                log.exception("ledger: delivering the journal")
            await asyncio.sleep(WATCH_SECONDS)

    def catch_up(self) -> None:
        """Blocking: one round of the watch."""
        if not self.journal.writable:
            self.journal.check_writable()
        if not self.database.up:
            self.database.probe()
        if self.journal.pending and self.database.up:
            try:
                self.journal.deliver(self.ledger.insert_missing)
                self.ledger_writable = True
            except Exception as exc:
                if not is_database_fault(exc):
                    raise
                self.database.failed(exc)

    def state(self) -> dict:
        """For /health: whether records reach the database, and what waits in the journal."""
        return {"database_writes": self.ledger_writable, "journal_pending": self.journal.pending,
                "journal_writable": self.journal.usable}

    def cost(self, model: str, usage: Usage) -> Cost | None:
        card = find_card(model)
        if card is None:
            return None
        return cost_of(usage, price_of(card, self.config.prices, self.config.billing.currency))

    def record(self, call: CallFacts, status: int, usage: Usage | None = None, error_code: str | None = None) -> None:
        """Write the call's record."""
        usage = usage or Usage()
        self.limiter.add_tokens(call.key.id, call.key.workspace_id, usage.total_tokens)
        if self.ledger is None:
            return
        cost = self.cost(call.model, usage)
        parts = [to_nanos(x) for x in (cost.input, cost.cached, cost.output)] if cost else [0, 0, 0]
        row = {
            "request_id": call.request_id,
            "workspace_id": call.key.workspace_id,
            "key_id": call.key.id,
            "model": call.model,
            "status": status,
            "error_code": error_code,
            "stream": call.stream,
            "protocol": call.protocol,
            "prompt_tokens": usage.prompt_tokens,
            "cached_tokens": usage.cached_tokens,
            "text_tokens": usage.prompt_tokens - usage.image_tokens - usage.video_tokens,
            "image_tokens": usage.image_tokens,
            "video_tokens": usage.video_tokens,
            "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost_input": parts[0],
            "cost_cached": parts[1],
            "cost_output": parts[2],
            "cost_total": sum(parts),
            "currency": self.config.billing.currency,
            "latency_ms": int((time.monotonic() - call.started) * 1000),
            "created_at": datetime.now(timezone.utc),
        }
        try:
            self.write(row)
        except JournalUnwritable as exc:  # nothing can keep it: at least the log does, whole
            log.error("ledger: request %s's record is lost: neither the database nor the journal took it (%s): %s",
                      call.request_id, exc, json.dumps(row, default=str))
