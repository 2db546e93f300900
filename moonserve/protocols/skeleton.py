"""The route skeleton that every protocol's call goes through: start the call, answer a refusal in
the protocol's own shape, then stream or collect the reply.

What it does the same for every protocol:
- the refusal: logged (request id, protocol, status, code, param, message), so an operator sees why
  an agent's request was refused, and counted in /metrics;
- the headers: the request id under the protocol's name for it, `X-Moonserve-Ignored-Params`;
- a stream opens as soon as the engine has admitted the call (before the prompt is prefilled), with
  `Cache-Control: no-cache` and `X-Accel-Buffering: no`; the protocol's stream sends a keep-alive
  every KEEPALIVE_SECONDS while the model is silent;
- a client that leaves ends the call: a stream's is noticed by the server's disconnect watch, a
  collected reply's by `unless_client_leaves`; either way the engine frees the request at once;
- the time to the first delta, in /metrics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from contextlib import aclosing
from typing import AsyncIterator, Awaitable, Callable, Iterable

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ..catalog import cards
from ..errors import ModelStudioError
from ..engines.protocol import Delta
from ..service.call import WAITING, BodyReader, Call
from ..api.disconnect import unless_client_leaves

log = logging.getLogger("moonserve.protocols")

KEEPALIVE_SECONDS = 5.0  # a stream's keep-alive while the model is silent (queued or prefilling)
KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: every client skips it


@dataclass
class Answer:
    """How one protocol answers one call."""

    protocol: str  # "chat", "anthropic", "responses", "dashscope": the ledger's and the metrics' name
    error: Callable[[ModelStudioError], Response]  # a refusal, in the protocol's shape
    stream: Callable[[], AsyncIterator[bytes]]  # the SSE body of a streamed reply
    collect: Callable[[], Awaitable[dict]]  # the JSON body of a plain reply
    request_id_header: str = "x-request-id"
    ignored: Callable[[], list[str]] = list  # fields without effect, beside the call's own (read once started)
    # a refusal's field names as this request named them (a chat field path otherwise)
    rename: Callable[[ModelStudioError], ModelStudioError] = lambda exc: exc


async def serve_call(request: Request, call: Call, read_body: BodyReader, reply: Answer) -> Response:
    metrics = request.app.state.metrics
    try:
        await call.start(read_body)
    except ModelStudioError as exc:
        exc = reply.rename(exc)
        refused(call, exc)
        metrics.requests.labels(_model_label(call), str(exc.status), reply.protocol).inc()
        return reply.error(exc)
    metrics.requests.labels(call.model, "200", reply.protocol).inc()
    ttft = metrics.ttft.labels(call.model, reply.protocol)
    call.on_first_delta = lambda: ttft.observe(time.monotonic() - call.started)
    headers = {reply.request_id_header: call.request_id}
    ignored = call.ignored + reply.ignored()
    if ignored:
        headers["X-Moonserve-Ignored-Params"] = ",".join(ignored)
    if call.stream:
        return StreamingResponse(reply.stream(), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        body = await unless_client_leaves(request, call, reply.collect())
    except ModelStudioError as exc:
        return reply.error(reply.rename(exc))
    return body if isinstance(body, PlainTextResponse) else JSONResponse(body, headers=headers)


async def events(call: Call, render: Callable[[Delta], Iterable[bytes]],
                 keepalive: bytes = KEEPALIVE) -> AsyncIterator[bytes]:
    """A stream's body from the call's deltas: `render(delta)` gives each delta's events, and
    `keepalive` goes out every KEEPALIVE_SECONDS while the model is silent. A call's error comes out
    as its Model Studio error, for the protocol to send in its own shape."""
    async with aclosing(call.deltas(heartbeat=KEEPALIVE_SECONDS)) as deltas:
        async for d in deltas:
            if d is WAITING:
                yield keepalive
            else:
                for event in render(d):
                    yield event


def refused(call: Call, exc: ModelStudioError) -> None:
    """The server's log says why a call was refused (4xx) or could not be served (5xx)."""
    level = logging.WARNING if exc.status < 500 else logging.ERROR
    log.log(level, "request %s (%s, %s) refused: %d %s param=%s: %s", call.request_id, call.protocol,
            call.model, exc.status, exc.code, exc.param, exc.message)


def _model_label(call: Call) -> str:
    return call.model if call.model in cards() else "-"
