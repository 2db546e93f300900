"""The call's deltas as Anthropic content blocks, with the stream events that build them.

One builder serves both replies: a stream sends its events as they come, a plain reply keeps only
the blocks. Blocks come in the order the model wrote them: `thinking` (its text, or none with
`display: "omitted"`, and a signature that seals the reasoning), `text`, `tool_use`. In thinking mode
a reply always opens with a thinking block, empty when the model wrote no reasoning, so that a
client sending the turn back (tool calls in thinking mode must carry their reasoning) is never
refused.
"""

from __future__ import annotations

import json
from typing import AsyncIterator

from ...engines.protocol import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from ...errors import ModelStudioError
from ...service.call import Call
from ...service.signatures import ReasoningSigner
from ..accumulated import each_delta
from ..skeleton import events
from .request import Turn

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error",
               429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def error_body(exc: ModelStudioError, rid: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(exc.status, "api_error"), "message": exc.message},
            "request_id": rid}


def usage_body(u: Usage) -> dict:
    """Anthropic counts cache reads apart from the input tokens."""
    return {"input_tokens": u.prompt_tokens - u.cached_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": u.cached_tokens, "output_tokens": u.completion_tokens}


def message_id(rid: str) -> str:
    return "msg_" + rid.replace("-", "")


def event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **data}, ensure_ascii=False,
                                                         separators=(",", ":")).encode() + b"\n\n"


PING = event("ping", {})


class Blocks:
    """Feed it deltas; it returns the events each one makes, and keeps the content blocks."""

    def __init__(self, signer: ReasoningSigner, *, thinking: bool, show_thinking: bool):
        self.signer = signer
        self.show_thinking = show_thinking
        self.content: list[dict] = []
        self.finish: Finish | None = None
        self._open: dict | None = None  # the block being written
        self._texts: list[str] = []  # its text so far
        self._owes_thinking = thinking  # a thinking block comes first in thinking mode, even empty

    def feed(self, d) -> list[bytes]:
        t = type(d)
        if t is Finish:
            self.finish = d
            events = self._thinking_first() + self._close()
            events.append(event("message_delta", {
                "delta": {"stop_reason": STOP_REASONS.get(d.reason, "end_turn"), "stop_sequence": None},
                "usage": usage_body(d.usage)}))
            events.append(event("message_stop", {}))
            return events
        if t is ReasoningDelta:
            events = self._ensure("thinking")
            self._texts.append(d.text)
            if not self.show_thinking or not d.text:
                return events
            return events + [self._delta({"type": "thinking_delta", "thinking": d.text})]
        events = self._thinking_first()
        if t is TextDelta:
            if not d.text:
                return events
            events += self._ensure("text")
            self._texts.append(d.text)
            return events + [self._delta({"type": "text_delta", "text": d.text})]
        if t is ToolCallDelta:
            if d.id is not None:  # a new call
                events += self._close() + self._start({"type": "tool_use", "id": d.id, "name": d.name, "input": {}})
            if d.arguments:
                self._texts.append(d.arguments)
                events.append(self._delta({"type": "input_json_delta", "partial_json": d.arguments}))
        return events

    def message(self, call: Call) -> dict:
        """The whole reply, once fed its `Finish`."""
        return {**start_message(call), "content": self.content,
                "stop_reason": STOP_REASONS.get(self.finish.reason, "end_turn"), "usage": usage_body(self.finish.usage)}

    # -- blocks -------------------------------------------------------------------------------------

    def _thinking_first(self) -> list[bytes]:
        return self._ensure("thinking") if self._owes_thinking else []

    def _ensure(self, kind: str) -> list[bytes]:
        self._owes_thinking = False
        if self._open is not None and self._open["type"] == kind:
            return []
        block = {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else {"type": "text",
                                                                                                 "text": ""}
        return self._close() + self._start(block)

    def _start(self, block: dict) -> list[bytes]:
        self._open, self._texts = block, []
        return [event("content_block_start", {"index": len(self.content), "content_block": dict(block)})]

    def _delta(self, delta: dict) -> bytes:
        return event("content_block_delta", {"index": len(self.content), "delta": delta})

    def _close(self) -> list[bytes]:
        block = self._open
        if block is None:
            return []
        self._open = None
        text = "".join(self._texts)
        events = []
        if block["type"] == "thinking":
            block["signature"] = self.signer.seal(text)
            if self.show_thinking:
                block["thinking"] = text
            events.append(self._delta({"type": "signature_delta", "signature": block["signature"]}))
        elif block["type"] == "text":
            block["text"] = text
        else:
            try:
                block["input"] = json.loads(text or "{}")
            except json.JSONDecodeError:
                block["input"] = {"_raw": text}
        events.append(event("content_block_stop", {"index": len(self.content)}))
        self.content.append(block)
        return events


def start_message(call: Call) -> dict:
    return {"id": message_id(call.request_id), "type": "message", "role": "assistant", "model": call.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**usage_body(call.usage_so_far()), "output_tokens": 0}}


async def collect(call: Call, signer: ReasoningSigner, turn: Turn) -> dict:
    blocks = Blocks(signer, thinking=call.thinking, show_thinking=turn.show_thinking)
    await each_delta(call, blocks.feed)
    return blocks.message(call)


async def stream(call: Call, signer: ReasoningSigner, turn: Turn) -> AsyncIterator[bytes]:
    """message_start and ping at once, content blocks (start, deltas, stop) in order, message_delta
    with the stop reason and usage, message_stop; a ping every few seconds while the model is
    silent. An error after the start is an `error` event."""
    yield event("message_start", {"message": start_message(call)})
    yield PING
    blocks = Blocks(signer, thinking=call.thinking, show_thinking=turn.show_thinking)
    try:
        async for e in events(call, blocks.feed, keepalive=PING):
            yield e
    except ModelStudioError as exc:
        yield event("error", {"error": error_body(exc, call.request_id)["error"]})
