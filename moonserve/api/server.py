"""Running the app under uvicorn: Model Studio's error body for malformed HTTP, and a graceful
shutdown that drains the calls in flight before uvicorn's own.

On the first SIGTERM (or Ctrl-C) the server stops admitting calls (503), lets running calls finish
for `server.shutdown_grace_seconds`, ends the rest with a 503 error event (see service/in_flight.py),
and only then lets uvicorn close its connections and stop. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import ModelStudioError


class MalformedRequest(ModelStudioError):
    status = 400
    code = "BadRequest.MalformedHttp"
    type = "invalid_request_error"


def _malformed_reply(msg: str) -> bytes:
    body = json.dumps(MalformedRequest(f"The request is not valid HTTP/1.1: {msg}").body(str(uuid.uuid4()))).encode()
    return (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class ModelStudioHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, in C: the per-chunk cost of a token stream is lower
    than h11's); a request that is not valid HTTP gets a Model Studio error body (uvicorn's own is
    plain text)."""

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_malformed_reply(msg))
        self.transport.close()


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, grace: float):
        super().__init__(config)
        self.calls = app.state.service.calls
        self.grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._drain: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig, frame) -> None:
        if self._loop is None or self._draining or self.should_exit:
            super().handle_exit(sig, frame)  # not started yet, or a second signal: uvicorn's own
            return
        self._draining = True  # in a signal handler: hand the drain to the loop
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig) -> None:
        self._drain = self._loop.create_task(self._drain_then_exit(sig))

    async def _drain_then_exit(self, sig) -> None:
        try:
            await self.calls.drain(self.grace)
        finally:
            super().handle_exit(sig, None)


def run(app: FastAPI, *, host: str, port: int, access_log: bool, grace: float) -> None:
    # httptools, and uvloop where installed ("auto"): a token stream's chunks cost less on the loop
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=access_log,
                            http=ModelStudioHttpToolsProtocol, loop="auto", timeout_graceful_shutdown=5)
    DrainingServer(config, app, grace).run()
