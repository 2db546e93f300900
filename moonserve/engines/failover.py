"""Several deployments behind one model id, in order of preference (e.g. the local vLLM cluster
first, Model Studio itself as overflow), like LiteLLM's fallbacks.

A call goes to the first deployment that is healthy (an embedded engine always is; an upstream as
its health checks and its last calls say). If that one fails before its first output (down,
overloaded, throttling), the call moves on to the next; after the first output it is that
deployment's. When none is healthy, each is tried all the same, in order.
"""

from __future__ import annotations

from typing import AsyncIterator

from .protocol import (Admitted, ChatOptions, Conversation, Delta, EngineOverloaded, EngineThrottled, EngineUnavailable, Engine,
                       Generation, Usage)

RETRYABLE = (EngineUnavailable, EngineOverloaded, EngineThrottled)


class FailoverEngine:
    def __init__(self, engines: list[Engine]):
        self.engines = engines
        self.name = " > ".join(e.name for e in engines)

    @property
    def accepts_media(self) -> bool:
        return all(e.accepts_media for e in self.engines)

    @property
    def supports_tools(self) -> bool:
        return all(e.supports_tools for e in self.engines)

    @property
    def context_length(self) -> int | None:
        known = [e.context_length for e in self.engines if e.context_length is not None]
        return min(known) if known else None

    @property
    def healthy(self) -> bool:
        return any(e.healthy for e in self.engines)

    def in_order(self) -> list[Engine]:
        healthy = [e for e in self.engines if e.healthy]
        return healthy + [e for e in self.engines if e not in healthy]

    def chat(self, conversation: Conversation, options: ChatOptions) -> "FailoverGeneration":
        return FailoverGeneration(self.in_order(), conversation, options)

    def count_tokens(self, conversation: Conversation, options: ChatOptions) -> int:
        return self.in_order()[0].count_tokens(conversation, options)


class FailoverGeneration:
    def __init__(self, engines: list[Engine], conversation: Conversation, options: ChatOptions):
        self.current: Generation | None = None
        self.deltas: AsyncIterator[Delta] = self._run(engines, conversation, options)

    def usage(self) -> Usage:
        return self.current.usage() if self.current is not None else Usage()

    async def _run(self, engines, conversation, options) -> AsyncIterator[Admitted | Delta]:
        admitted = False
        for k, engine in enumerate(engines):
            generation = engine.chat(conversation, options)
            self.current = generation
            try:
                first = await anext(generation.deltas)
                if type(first) is Admitted:  # passed on once; the call may still move on before output
                    if not admitted:
                        admitted = True
                        yield first
                    first = await anext(generation.deltas)
            except RETRYABLE:
                await generation.deltas.aclose()
                if k == len(engines) - 1:
                    raise
                continue
            except BaseException:
                await generation.deltas.aclose()
                raise
            break
        try:
            yield first
            async for d in generation.deltas:
                yield d
        finally:
            await generation.deltas.aclose()
