"""Per authenticated call: rate limits before it, its ledger record after it.

`call.ChatCall` calls `admit` first and `record` exactly once, however the call ends.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..accounts.ledger import Ledger
from ..accounts.limits import RateLimiter
from ..accounts.store import ApiKey, Store
from ..catalog import card as find_card
from ..config import Config
from ..engines.protocol import Usage
from .billing import Cost, cost_of, price_of, to_nanos

if TYPE_CHECKING:
    from .call import ChatCall

class Accounting:
    def __init__(self, config: Config, store: Store):
        self.config = config
        self.ledger = Ledger(store.engine) if config.billing.ledger else None
        self.limiter = RateLimiter(store.engine, config.limits)

    def admit(self, key: ApiKey) -> None:
        """Raises RateQuota (429) when the key or its workspace is over its limits."""
        self.limiter.admit(key.id, key.workspace_id)

    def cost(self, model: str, usage: Usage) -> Cost | None:
        card = find_card(model)
        if card is None:
            return None
        return cost_of(usage, price_of(card, self.config.prices, self.config.billing.currency))

    def record(self, call: "ChatCall", status: int, usage: Usage | None = None, error_code: str | None = None) -> None:
        """Write the call's record."""
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
        })
