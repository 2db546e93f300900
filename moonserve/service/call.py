"""One chat call, owned from the authenticated key to its one ledger row.

The route hands over the key and a reader for the body, then renders what the call yields. The call
does the rest, in order: refuse while the server drains (503), admit under the rate limits (429),
read and parse the body (400, 413), authorize the model (404, 403), apply the card's rules (400),
load media, and have the engine admit the request (its input processed and queued: a prompt too long
is still a 400, a full queue a 503). `start` ends there, so a stream opens at once, before the
prompt is prefilled; `deltas` then waits for the output and passes it on.

Whatever ends it writes exactly one ledger record, here and nowhere else: the `Finish` (recorded
before it is passed on, so a crash after that loses nothing), a refusal, an engine error before or
after the first delta (mapped to its Model Studio error; mid-stream the route sends it as an error
event), the client going away (499, with what was generated so far), or a shutdown (503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Awaitable, Callable, Protocol

from ..accounts.availability import DatabaseUnavailable, is_database_fault
from ..accounts.store import ApiKey
from ..catalog import ModelCard
from ..formats.template import TemplateRenderError
from ..engines.protocol import (Admitted, Delta, EngineOverloaded, EngineRejected, EngineThrottled, EngineUnavailable, Finish,
                                Generation, PromptTooLong, ReasoningDelta, UnsupportedResponseFormat, Usage)
from ..errors import (ClientClosedRequest, ContextLengthExceeded, InternalError, InvalidParameter, ModelStudioError, ModelUnavailable,
                      Throttling)
from .request import ChatRequest
from ..workers import offload
from . import rules
from .accounting import Accounting, CallFacts
from .in_flight import InFlight

log = logging.getLogger("moonserve.service")

BodyReader = Callable[[], Awaitable[tuple[ChatRequest, int]]]


class CallSteps(Protocol):
    """What a call needs of the service that every call shares (service.py's `Service`)."""

    calls: InFlight
    accounting: Accounting

    def authorize_model(self, key: ApiKey, model_id: str) -> ModelCard: ...

    async def generate(self, req: ChatRequest, card: ModelCard, decision: rules.Decision,
                       request_bytes: int = 0) -> Generation: ...


class Waiting:
    """What `Call.deltas(heartbeat=...)` yields while the model is silent: no output yet."""


WAITING = Waiting()


class Call:
    def __init__(self, service: CallSteps, key: ApiKey, request_id: str, protocol: str = "chat"):
        self.service = service
        self.key = key
        self.request_id = request_id
        self.protocol = protocol  # the wire format it came by: "chat", "anthropic", "responses" or "dashscope"
        self.model = "-"
        self.stream = False
        self.include_usage = False
        self.thinking = False  # a thinking-mode reply always carries reasoning_content; another never does
        self.ignored: list[str] = []
        self.started = time.monotonic()
        self.card: ModelCard | None = None
        self.recorded = False
        self.on_first_delta: Callable[[], None] | None = None  # e.g. the time-to-first-token metric
        self._generation: Generation | None = None
        self._first: Delta | None = None  # a delta that came with the admission (an engine without one)
        self._task: asyncio.Task | None = None
        self._ended_by: ModelStudioError | None = None  # set by `end`: why the call was ended from outside
        self._finishing = False

    # -- the call's course ----------------------------------------------------------------------

    async def start(self, read_body: BodyReader) -> None:
        """Everything up to the engine's admission. A refusal is recorded, then raised as its Model
        Studio error."""
        self._task = asyncio.current_task()
        try:
            await self._start(read_body)
        except BaseException as exc:
            raise await self._failed(exc) from None

    async def _start(self, read_body: BodyReader) -> None:
        service = self.service
        service.calls.open(self)  # 503 while the server drains
        await asyncio.to_thread(service.accounting.admit, self.key)
        req, size = await read_body()
        self.model, self.stream = req.model, req.stream
        self.card = await asyncio.to_thread(service.authorize_model, self.key, req.model)
        decision = await offload(rules.decide, req, self.card)
        self.include_usage, self.ignored = decision.include_usage, decision.ignored
        self.thinking = decision.options.thinking
        self._generation = await service.generate(req, self.card, decision, size)
        first = await anext(self._generation.deltas)
        if type(first) is not Admitted:
            self._first = first

    async def deltas(self, heartbeat: float | None = None) -> AsyncIterator[Delta | Waiting]:
        """The deltas, from the first; the last is the `Finish`. Errors come out as Model Studio
        errors, already recorded. With `heartbeat`, `WAITING` comes every `heartbeat` seconds while
        the model is still silent (queued, prefilling), for a stream to keep its connection alive."""
        self._task = asyncio.current_task()
        stream = self._generation.deltas
        try:
            d = self._first
            if d is None and heartbeat is None:
                d = await anext(stream)
            elif d is None:
                first = asyncio.ensure_future(anext(stream))
                try:
                    while not first.done():
                        await asyncio.wait((first,), timeout=heartbeat)
                        if not first.done():
                            yield WAITING
                finally:
                    if not first.done():  # the call ends while the prompt is prefilled
                        first.cancel()
                        await asyncio.wait((first,))
                d = first.result()
            if self.on_first_delta is not None:
                self.on_first_delta()
            while True:
                t = type(d)
                if t is Finish:
                    self._finishing = True
                    d = Finish(d.reason, rules.counted_usage(d.usage, self.card))
                    await self._record(200, d.usage)
                    yield d
                    return
                if t is not ReasoningDelta or self.thinking:  # reasoning written unasked is billed, not shown
                    yield d
                d = await anext(stream)
        except GeneratorExit:  # the consumer stopped reading: the client is gone
            self._record_now(ClientClosedRequest.status, ClientClosedRequest.code)
            raise
        except BaseException as exc:
            raise await self._failed(exc) from None
        finally:
            # (a first delta still awaited in its own task, cancelled above, closes the stream itself)
            if not getattr(stream, "ag_running", False):
                await stream.aclose()

    def end(self, error: ModelStudioError) -> None:
        """End the call from outside (a shutdown; a client gone while its reply was computed): the
        task running it is cancelled, and the call ends with `error`, recorded."""
        task = self._task
        if self._ended_by is None and not self._finishing and not self.recorded and task and not task.done():
            self._ended_by = error
            task.cancel()

    # -- how it ends ----------------------------------------------------------------------------

    async def _failed(self, exc: BaseException) -> BaseException:
        """Record the call's end by exception; what to raise in its place."""
        if isinstance(exc, asyncio.CancelledError):
            if self._ended_by is None:  # cancelled by the server: the client went away
                self._record_now(ClientClosedRequest.status, ClientClosedRequest.code)
                return exc
            self._task.uncancel()
            error = self._ended_by
        else:
            error = model_studio_error(exc, self.request_id)
        await self._record(error.status, self._usage(), error.code)
        return error

    def usage_so_far(self) -> Usage:
        return self._usage() or Usage()

    def _usage(self) -> Usage | None:
        return rules.counted_usage(self._generation.usage(), self.card) if self._generation is not None else None

    async def _record(self, status: int, usage: Usage | None, code: str | None = None) -> None:
        if not self.recorded:
            self.recorded = True
            self.service.calls.close(self)
            await asyncio.to_thread(self.service.accounting.record, self.facts(), status, usage, code)

    def facts(self) -> CallFacts:
        return CallFacts(self.request_id, self.key, self.model, self.stream, self.protocol, self.started)

    def _record_now(self, status: int, code: str | None) -> None:
        """Synchronous: usable while the task is being cancelled, where an await would be cut short."""
        if not self.recorded:
            self.recorded = True
            self.service.calls.close(self)
            self.service.accounting.record(self.facts(), status, self._usage(), code)


def model_studio_error(exc: BaseException, request_id: str) -> ModelStudioError:
    """What an exception from anywhere in a call means to the client."""
    if isinstance(exc, ModelStudioError):
        return exc
    if isinstance(exc, PromptTooLong):
        return ContextLengthExceeded(exc.tokens, exc.limit)
    if isinstance(exc, EngineOverloaded):
        return ModelUnavailable("The deployment behind this model is overloaded; retry later",
                                headers={"Retry-After": "1"})
    if isinstance(exc, EngineUnavailable):
        return ModelUnavailable(f"The deployment behind this model is unavailable: {exc}", headers={"Retry-After": "1"})
    if isinstance(exc, EngineThrottled):
        return Throttling("Requests throttling triggered by the deployment behind this model; retry later",
                          headers={"Retry-After": "1"})
    if isinstance(exc, EngineRejected):
        return InvalidParameter(str(exc))
    if isinstance(exc, TemplateRenderError):  # the model's template refused this conversation
        return InvalidParameter(f"messages: {exc}", param="messages")
    if isinstance(exc, UnsupportedResponseFormat):
        return InvalidParameter(f"{exc.param}: {exc}", param=exc.param)
    if isinstance(exc, DatabaseUnavailable) or is_database_fault(exc):
        return ModelUnavailable("The accounts database is unavailable; retry later", headers={"Retry-After": "5"})
    log.error("call %s failed", request_id, exc_info=exc)
    return InternalError()
