"""Worker threads for the work that must not hold the event loop: parsing a large body, checking
schemas, rendering a chat template, tokenizing, building a grammar, decoding images.

Bounded: at most WORKERS such jobs run at once and the rest wait their turn, so a flood of large
requests queues here instead of taking every thread (the database's and the engines' included).
A job whose caller is cancelled still runs to its end (its result is dropped), so whatever it
allocates can be released by the caller's cleanup.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import anyio
import anyio.to_thread

WORKERS = 4
T = TypeVar("T")

_limiter: anyio.CapacityLimiter | None = None


async def offload(fn: Callable[..., T], *args) -> T:
    global _limiter
    if _limiter is None:  # made on first use, inside the running event loop
        _limiter = anyio.CapacityLimiter(WORKERS)
    return await anyio.to_thread.run_sync(fn, *args, limiter=_limiter)
