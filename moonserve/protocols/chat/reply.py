"""Shape engine deltas into Model Studio's replies: one JSON body, or SSE chunks.

Chunks are built as dicts and serialised with json.dumps: this runs once per generated token.
"""

from __future__ import annotations

import json
import time
from typing import AsyncIterator, Callable

from ...engines.protocol import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from ...errors import ModelStudioError
from ...service.call import Call
from ..accumulated import accumulate
from ..skeleton import events


def usage_body(u: Usage) -> dict:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {
            "cached_tokens": u.cached_tokens,
            "text_tokens": u.prompt_tokens - u.image_tokens - u.video_tokens,
            "image_tokens": u.image_tokens,
            "video_tokens": u.video_tokens,
        },
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "text_tokens": u.completion_tokens - u.reasoning_tokens,
        },
    }


async def collect(call: Call) -> dict:
    """The whole non-stream reply."""
    answer = await accumulate(call)
    message: dict = {"role": "assistant", "content": answer.text}
    if call.thinking:  # even when empty: a client that sends the message back is never refused
        message["reasoning_content"] = answer.reasoning
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
    return {
        "id": f"chatcmpl-{call.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish.reason, "logprobs": None}],
        "usage": usage_body(answer.finish.usage),
    }


def _sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


_HOLE = "\ufdd0text\ufdd0"  # a noncharacter: never in a model's text


def _text_chunk(chunk) -> Callable[[str], bytes]:
    """`chunk(delta)` for a delta whose one varying field is a string, as a template: the bytes
    around the string are rendered once, and each token only JSON-encodes its text."""
    before, after = chunk(_HOLE).split(json.dumps(_HOLE, ensure_ascii=False).encode())
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    return lambda text: before + dumps(text).encode() + after


async def stream(call: Call) -> AsyncIterator[bytes]:
    """SSE: a role chunk, delta chunks, a finish chunk, the usage chunk if asked, then [DONE].
    An error after the first byte (the call has recorded it) is sent as `data: {"error": ...}` and
    ends the stream."""
    cid = f"chatcmpl-{call.request_id}"
    created = int(time.time())
    model = call.model

    def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
        return _sse({
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            "usage": None,
        })

    content = _text_chunk(lambda text: chunk({"content": text}))
    reasoning = _text_chunk(lambda text: chunk({"content": None, "reasoning_content": text}))
    yield chunk({"role": "assistant", "content": ""})
    reasoned = not call.thinking  # in thinking mode, reasoning_content comes first, even when empty

    def render(d) -> tuple[bytes, ...]:
        nonlocal reasoned
        t = type(d)
        if t is TextDelta:
            out: tuple[bytes, ...] = (content(d.text),)
        elif t is ReasoningDelta:
            out = (reasoning(d.text),)
        elif t is ToolCallDelta:
            piece: dict = {"index": d.index, "function": {"arguments": d.arguments}}
            if d.id is not None:
                piece = {"index": d.index, "id": d.id, "type": "function",
                         "function": {"name": d.name, "arguments": d.arguments}}
            out = (chunk({"content": None, "tool_calls": [piece]}),)
        elif t is Finish:
            out = (chunk({}, d.reason),)
            if call.include_usage:
                out += (_sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                              "system_fingerprint": None, "choices": [], "usage": usage_body(d.usage)}),)
        else:
            out = ()
        if not reasoned:
            reasoned = True
            if t is not ReasoningDelta:
                out = (chunk({"content": None, "reasoning_content": ""}),) + out
        return out

    try:
        async for event in events(call, render):
            yield event
        yield b"data: [DONE]\n\n"
    except ModelStudioError as exc:
        yield _sse(exc.body(call.request_id))
