"""Per authenticated call: rate limits before it, exactly one ledger record after it.

The HTTP layer calls `admit` first, then `record` once: with the final usage before the reply's
last byte is sent (so a crash after that cannot lose it), with the usage so far when the client
went away (status 499), or with none for a refused call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..accounts.ledger import Ledger
from ..accounts.limits import RateLimiter
from ..accounts.store import ApiKey, Store
from ..catalog import card as find_card
from ..config import Config
from ..engines.protocol import Usage
from .billing import Cost, cost_of, price_of, to_nanos

CLIENT_CLOSED = 499


@dataclass
class Call:
    request_id: str
    key: ApiKey
    model: str = "-"
    stream: bool = False
    started: float = field(default_factory=time.monotonic)
    recorded: bool = False


class Accounting:
    def __init__(self, config: Config, store: Store):
        self.config = config
        self.ledger = Ledger(store.engine) if config.billing.ledger else None
        self.limiter = RateLimiter(store.engine, config.limits)

    def admit(self, call: Call) -> None:
        """Raises RateQuota (429) when the key or its workspace is over its limits."""
        self.limiter.admit(call.key.id, call.key.workspace_id)

    def cost(self, model: str, usage: Usage) -> Cost | None:
        card = find_card(model)
        if card is None:
            return None
        return cost_of(usage, price_of(card, self.config.prices, self.config.billing.currency))

    def record(self, call: Call, status: int, usage: Usage | None = None, error_code: str | None = None) -> None:
        """Write the call's one record (later calls for the same call do nothing)."""
        if call.recorded:
            return
        call.recorded = True
        usage = usage or Usage()
        self.limiter.add_tokens(call.key.id, call.key.workspace_id, usage.total_tokens)
        if self.ledger is None:
            return
        cost = self.cost(call.model, usage)
        parts = [to_nanos(x) for x in (cost.input, cost.cached, cost.output)] if cost else [0, 0, 0]
        self.ledger.record({
            "request_id": call.request_id,
            "workspace_id": call.key.workspace_id,
            "key_id": call.key.id,
            "model": call.model,
            "status": status,
            "error_code": error_code,
            "stream": call.stream,
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
        })
