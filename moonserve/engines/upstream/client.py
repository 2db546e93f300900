"""HTTP to the upstream: the streamed chat call, token counting and the health check. Its failures
become the engine errors the service maps to Model Studio's: 429 → EngineThrottled, 400-class →
EngineRejected (with the upstream's message), 5xx, 401/403/404 (our configuration, not the client's
request) and connection errors → EngineUnavailable. The API key comes from the environment and
appears in no message or log."""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx

from .settings import UpstreamDeployment
from ..protocol import EngineRejected, EngineThrottled, EngineUnavailable
from .health import probe

MAX_ERROR_TEXT = 2000
MAX_LINE = 16 * 1024 * 1024  # one SSE line (a chunk); a tool call's arguments come in many


def _headers(d: UpstreamDeployment) -> dict:
    key = os.environ.get(d.api_key_env) if d.api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def _message(body: bytes) -> str:
    """The upstream's own error message (OpenAI, vLLM, llama-server and smg bodies)."""
    text = body[:MAX_ERROR_TEXT].decode("utf-8", "replace")
    try:
        data = json.loads(body)
    except ValueError:
        return text.strip() or "no message"
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:MAX_ERROR_TEXT]
    return str(error)[:MAX_ERROR_TEXT]


def error_for(status: int, body: bytes) -> Exception:
    message = _message(body)
    if status == 429:
        return EngineThrottled(message)
    if status in (400, 413, 422):
        return EngineRejected(message)
    return EngineUnavailable(f"upstream answered {status}: {message}")


class UpstreamClient:
    def __init__(self, d: UpstreamDeployment):
        self.base_url = d.base_url.rstrip("/")
        self.flavour = d.flavour
        timeout = httpx.Timeout(d.read_timeout, connect=d.connect_timeout)
        limits = httpx.Limits(max_connections=d.max_concurrency + 8, max_keepalive_connections=d.max_concurrency)
        self.http = httpx.AsyncClient(timeout=timeout, limits=limits, headers=_headers(d))
        self.sync_headers = _headers(d)
        self.timeout = timeout

    async def close(self) -> None:
        await self.http.aclose()

    @asynccontextmanager
    async def chat_stream(self, payload: dict) -> AsyncIterator[AsyncIterator[dict]]:
        """The upstream's chunks, as dicts. An error chunk in the stream raises EngineUnavailable."""
        request = self.http.build_request("POST", f"{self.base_url}/chat/completions", json=payload)
        try:
            r = await self._send(request)
            try:
                if r.status_code != 200:
                    raise error_for(r.status_code, await r.aread())
                yield self._chunks(r)
            finally:
                await r.aclose()
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"upstream unreachable: {type(exc).__name__}") from None

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send, and once more on a new connection if a kept-alive one turns out closed before any
        answer (llama-server closes a stream's connection at its end: the request was never read)."""
        try:
            return await self.http.send(request, stream=True)
        except httpx.RemoteProtocolError:
            return await self.http.send(request, stream=True)

    @staticmethod
    async def _lines(r: httpx.Response) -> AsyncIterator[str]:
        """The SSE lines, each at most MAX_LINE bytes: an upstream that never ends a line cannot
        fill our memory."""
        pending: list[bytes] = []  # the current line's pieces so far
        size = 0
        async for data in r.aiter_bytes():
            if b"\n" not in data:
                pending.append(data)
                size += len(data)
                if size > MAX_LINE:
                    raise EngineUnavailable(f"upstream sent a line longer than {MAX_LINE} bytes")
                continue
            first, *lines, rest = data.split(b"\n")
            for line in (b"".join(pending) + first, *lines):
                yield line.rstrip(b"\r").decode("utf-8", "replace")
            pending, size = [rest], len(rest)
        if size:
            yield b"".join(pending).decode("utf-8", "replace")

    @classmethod
    async def _chunks(cls, r: httpx.Response) -> AsyncIterator[dict]:
        async for line in cls._lines(r):
            if not line.startswith("data:"):
                continue  # event names, comments (keep-alives), blank lines
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                raise EngineUnavailable("upstream sent a chunk that is not JSON") from None
            if isinstance(chunk, dict) and chunk.get("error"):
                raise EngineUnavailable(f"upstream stream error: {_message(data.encode())}")
            yield chunk

    async def health(self) -> str | None:
        """None when the upstream can serve, else why not (health.py)."""
        return await probe(self.http, self.base_url, self.flavour, self.timeout.connect or 5.0)

    def models(self) -> list[str]:
        r = httpx.get(f"{self.base_url}/models", headers=self.sync_headers, timeout=self.timeout)
        r.raise_for_status()
        return [m["id"] for m in r.json().get("data", [])]

    def post(self, path: str, body: dict) -> dict:
        """A blocking POST to the server's root (…/tokenize, …/apply-template): for worker threads."""
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        try:
            r = httpx.post(f"{root}{path}", json=body, headers=self.sync_headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"upstream unreachable: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise error_for(r.status_code, r.content)
        return r.json()
