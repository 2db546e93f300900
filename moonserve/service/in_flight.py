"""The calls in flight, and the drain when the server shuts down.

On SIGTERM the server stops admitting (a new call gets 503 `ModelUnavailable`), lets running calls
finish for a grace period, then ends those still running with the same 503 (as an error event in a
stream). Each ends through its own `Call`, so each leaves its one ledger record.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..errors import ModelStudioError, ModelUnavailable


class Endable(Protocol):
    """A call in flight (call.py's `Call`), as the drain sees it."""

    def end(self, error: ModelStudioError) -> None: ...

# How long ended calls get to record themselves before the server goes on shutting down.
END_WAIT_SECONDS = 5.0


def shutting_down() -> ModelUnavailable:
    return ModelUnavailable("The server is shutting down; retry the request (on another node)",
                            headers={"Retry-After": "1"})


class InFlight:
    def __init__(self) -> None:
        self.running: set[Endable] = set()
        self.draining = False

    def open(self, call: Endable) -> None:
        if self.draining:
            raise shutting_down()
        self.running.add(call)

    def close(self, call: Endable) -> None:
        self.running.discard(call)

    async def drain(self, grace: float) -> None:
        """Stop admitting; wait up to `grace` seconds for running calls; end the rest."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.running and loop.time() < deadline:
            await asyncio.sleep(0.05)
        deadline = loop.time() + END_WAIT_SECONDS
        while self.running and loop.time() < deadline:
            for call in list(self.running):  # again each round: a stream's task starts after its call
                call.end(shutting_down())
            await asyncio.sleep(0.05)
