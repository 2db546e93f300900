"""The upstream engine: the upstream's chunks as Moonserve's deltas, and the upstream's health.

Whatever the flavour, the deltas are the embedded engine's: reasoning (`reasoning_content`, or
vLLM's `reasoning`) as ReasoningDelta; the answer as TextDelta; tool calls with ids in Kimi's
`functions.NAME:IDX` form, numbered after the calls already in the conversation. Where the
deployment names a reasoning or tool parser, the upstream's raw text goes through Moonserve's own
parsers (an upstream started without its parsers), so no marker ever reaches the client. The usage
is the upstream's (`cached_tokens` 0 when it says nothing); a call that ends early is billed what
was delivered.
"""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import urlsplit, urlunsplit
from contextlib import asynccontextmanager
from typing import AsyncIterator

from ...formats.output import OutputPipeline
from ...config import ConfigError
from .settings import UpstreamDeployment
from ...workers import offload
from ..protocol import (Admitted, ChatOptions, Conversation, Delta, EngineOverloaded, EngineRejected, EngineUnavailable, Finish,
                        ReasoningDelta, ToolCallDelta, Usage)
from .client import UpstreamClient
from .payload import build_payload

log = logging.getLogger("moonserve.upstream")

KIMI_ID = re.compile(r"functions\.[A-Za-z0-9_-]+:\d+")
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
                  "eos": "stop", "abort": "stop"}


class UpstreamEngine:
    accepts_media: bool
    supports_tools = True
    context_length = None  # the upstream's own

    def __init__(self, deployment: UpstreamDeployment):
        self.deployment = deployment
        self.name = deployment.name
        self.accepts_media = deployment.vision
        self.client: UpstreamClient | None = None
        self.model = deployment.upstream_model
        self.healthy = False
        self.last_error: str | None = None
        self.in_flight = 0
        self.waiting = 0
        self.failures = 0
        self.completed = 0
        self._slots = asyncio.Semaphore(deployment.max_concurrency)
        self._max_waiting = deployment.max_waiting if deployment.max_waiting is not None \
            else 8 * deployment.max_concurrency
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        """Connect, and keep watching. An upstream that is down at start-up is not fatal: it is
        reported in /health and tried again, and a model with several deployments uses the next."""
        self.client = UpstreamClient(self.deployment)
        await self._check()
        if self.healthy and self.model is None:
            models = await asyncio.to_thread(self.client.models)
            if len(models) != 1:
                raise ConfigError(f"deployment {self.name!r}: the upstream serves {models}; set upstream_model")
        if not self.healthy:
            log.warning("deployment %s: upstream %s is not answering yet (%s)", self.name, self.public_url,
                        self.last_error)
        self._watch = asyncio.create_task(self._watch_health())

    async def close(self) -> None:
        if self._watch:
            self._watch.cancel()
        if self.client:
            await self.client.close()

    async def _check(self) -> None:
        problem = await self.client.health()
        ok = problem is None
        if ok and self.model is None:  # the upstream's only model, learnt once it answers
            models = await asyncio.to_thread(self.client.models)
            self.model = models[0] if len(models) == 1 else None
        if ok != self.healthy:
            log.info("deployment %s: upstream %s%s", self.name, "up" if ok else "down", "" if ok else f" ({problem})")
        self.healthy = ok
        self.last_error = problem

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.deployment.health_interval)
            try:
                await self._check()
            except Exception:  # never let the watch die
                log.exception("deployment %s: health check", self.name)

    @property
    def public_url(self) -> str:
        """The base URL without any user:password in it (/health is open to everyone)."""
        parts = urlsplit(self.deployment.base_url)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
        return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))

    def mark_failed(self, error: Exception) -> None:
        """A call found the upstream down: route around it until the next health check says otherwise."""
        self.healthy = False
        self.failures += 1
        self.last_error = str(error)

    def stats(self) -> dict:
        return {"engine": "upstream", "flavour": self.deployment.flavour, "base_url": self.public_url,
                "model": self.model, "healthy": self.healthy, "up": int(self.healthy), "running": self.in_flight,
                "waiting": self.waiting, "failures": self.failures, "completed": self.completed,
                "last_error": self.last_error}

    @asynccontextmanager
    async def slot(self):
        """One of max_concurrency calls in flight; beyond max_waiting waiting, EngineOverloaded."""
        if self._slots.locked() and self.waiting >= self._max_waiting:
            raise EngineOverloaded()
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()

    def chat(self, conversation: Conversation, options: ChatOptions) -> "UpstreamGeneration":
        return UpstreamGeneration(self, conversation, options)

    def count_tokens(self, conversation: Conversation, options: ChatOptions) -> int:
        """Blocking: the upstream's own tokenizer, through its /tokenize."""
        d, client = self.deployment, self.client
        payload = build_payload(d, conversation, options, self.model or "")
        if d.flavour in ("vllm", "sglang"):
            body = {k: payload[k] for k in ("model", "messages", "tools", "chat_template_kwargs") if k in payload}
            return int(client.post("/tokenize", {**body, "add_generation_prompt": True})["count"])
        if d.flavour == "llamacpp":
            prompt = client.post("/apply-template", {"messages": payload["messages"],
                                                     "chat_template_kwargs": payload.get("chat_template_kwargs", {})})
            return len(client.post("/tokenize", {"content": prompt["prompt"]})["tokens"])
        raise EngineRejected(f"counting tokens is not available for deployment {self.name} (an {d.flavour} upstream)")


class UpstreamGeneration:
    def __init__(self, engine: UpstreamEngine, conversation: Conversation, options: ChatOptions):
        self.engine = engine
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self.reasoning_reported = False  # whether the upstream's usage counts reasoning (vLLM's does)
        self.deltas: AsyncIterator[Delta] = self._run(conversation, options)

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                     cached_tokens=self.cached_tokens, reasoning_tokens=self.reasoning_tokens)

    def _take_usage(self, u: dict) -> None:
        self.prompt_tokens = int(u.get("prompt_tokens") or 0)
        self.completion_tokens = max(self.completion_tokens, int(u.get("completion_tokens") or 0))
        self.cached_tokens = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens")
        if reasoning is not None:
            self.reasoning_tokens = int(reasoning)
            self.reasoning_reported = True

    def _take_timings(self, t: dict) -> None:
        self.cached_tokens = int(t.get("cache_n") or 0)
        self.prompt_tokens = self.cached_tokens + int(t.get("prompt_n") or 0)
        self.completion_tokens = max(self.completion_tokens, int(t.get("predicted_n") or 0))

    async def _run(self, conversation: Conversation, options: ChatOptions) -> AsyncIterator[Admitted | Delta]:
        engine, d = self.engine, self.engine.deployment
        if engine.model is None:
            raise EngineUnavailable(f"deployment {engine.name}: the upstream has not answered yet")
        payload = await offload(build_payload, d, conversation, options, engine.model)
        first_index = sum(len(m.get("tool_calls") or ()) for m in conversation.messages)
        # the upstream's raw text goes through our parsers where the deployment names them
        pipeline = OutputPipeline(reasoning=d.reasoning_parser != "none" and options.thinking,
                                  starts_in_reasoning=False,
                                  tool_format=d.tool_parser if d.tool_parser != "none" and conversation.tools else None,
                                  first_tool_index=first_index)
        calls: dict[int, int] = {}  # the upstream's tool-call index -> ours
        reasoning_pieces = answer_pieces = 0
        reason = None
        # max_tokens bounds the answer alone: where the upstream could not be told (reasoning comes
        # first), the answer ends here after that many pieces (one token each, as engines stream)
        answer_limit = options.max_tokens if options.thinking and options.max_completion_tokens is None else None
        try:
            async with engine.slot(), engine.client.chat_stream(payload) as chunks:
                yield Admitted()  # the upstream took it: its refusals came before this
                async for chunk in chunks:
                    if chunk.get("usage"):
                        self._take_usage(chunk["usage"])
                    elif chunk.get("timings"):  # llama-server's running counts
                        self._take_timings(chunk["timings"])
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                        if reasoning:
                            reasoning_pieces += 1
                            yield ReasoningDelta(reasoning)
                        if delta.get("content"):
                            for out in pipeline.feed(delta["content"]):
                                if type(out) is ReasoningDelta:
                                    reasoning_pieces += 1
                                else:
                                    answer_pieces += 1
                                yield out
                        for tc in delta.get("tool_calls") or ():
                            answer_pieces += 1
                            yield self._tool_call(tc, calls, first_index)
                        if choice.get("finish_reason"):
                            reason = FINISH_REASONS.get(choice["finish_reason"], "stop")
                    # no usage yet (an upstream without running stats): count what came; reasoning
                    # from the reasoning itself where the upstream does not count it (llama-server
                    # streams one token a chunk)
                    self.completion_tokens = max(self.completion_tokens, reasoning_pieces + answer_pieces)
                    if not self.reasoning_reported:
                        self.reasoning_tokens = min(reasoning_pieces, self.completion_tokens)
                    if answer_limit is not None and answer_pieces >= answer_limit and reason is None:
                        reason = "length"  # leaving the stream ends the upstream's generation
                        break
            for out in pipeline.flush():
                yield out
        except EngineUnavailable as exc:
            engine.mark_failed(exc)
            raise
        if reason is None:
            engine.mark_failed(EngineUnavailable("stream ended without a finish reason"))
            raise EngineUnavailable("the upstream's stream ended before the reply was complete")
        if pipeline.tool_calls_done or calls:
            reason = "tool_calls" if reason == "stop" else reason
        engine.completed += 1
        yield Finish(reason, self.usage())

    @staticmethod
    def _tool_call(tc: dict, calls: dict[int, int], first_index: int) -> ToolCallDelta:
        fn = tc.get("function") or {}
        upstream_index = int(tc.get("index", len(calls)))
        if upstream_index not in calls:  # a new call: its first piece carries the id and the name
            calls[upstream_index] = len(calls)
            index = calls[upstream_index]
            name = fn.get("name") or ""
            call_id = tc.get("id") or ""
            if not KIMI_ID.fullmatch(call_id):
                call_id = f"functions.{name}:{first_index + index}"
            return ToolCallDelta(index=index, arguments=fn.get("arguments") or "", id=call_id, name=name)
        return ToolCallDelta(index=calls[upstream_index], arguments=fn.get("arguments") or "")
