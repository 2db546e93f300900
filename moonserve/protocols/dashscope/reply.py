"""The call's deltas in DashScope's shape: `{"output", "usage", "request_id"}`, whole or as an
`X-DashScope-SSE` stream of `id:` / `event:result` events, each carrying what is new
(`incremental_output: true`) or the output so far; errors as `{"code", "message", "request_id"}`."""

from __future__ import annotations

import json
from typing import AsyncIterator

from ...engines.protocol import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from ...errors import ModelStudioError
from ...service.call import Call
from ..accumulated import Accumulated, accumulate
from ..skeleton import events
from .request import Turn

# The compatible mode's codes that DashScope's native API spells its own way.
NATIVE_CODES = {"invalid_parameter_error": "InvalidParameter", "invalid_api_key": "InvalidApiKey",
                "model_not_found": "ModelNotFound"}


def error_body(exc: ModelStudioError, rid: str) -> dict:
    return {"code": NATIVE_CODES.get(exc.code, exc.code), "message": exc.message, "request_id": rid}


def usage_body(u: Usage) -> dict:
    return {
        "input_tokens": u.prompt_tokens,
        "output_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "input_tokens_details": {"text_tokens": u.prompt_tokens - u.image_tokens - u.video_tokens,
                                 "image_tokens": u.image_tokens, "video_tokens": u.video_tokens},
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens_details": {"text_tokens": u.completion_tokens - u.reasoning_tokens,
                                  "reasoning_tokens": u.reasoning_tokens},
    }


class Shape:
    """One reply's output objects."""

    def __init__(self, call: Call, turn: Turn):
        self.call, self.turn = call, turn
        self.running = "null" if not turn.multimodal else None  # a stream's finish_reason before the end

    def output(self, text: str, reasoning: str | None, tool_calls: list[dict], finish_reason: str | None) -> dict:
        if self.turn.result_format == "text":
            return {"text": text, "finish_reason": finish_reason}
        message: dict = {"role": "assistant", "content": ([{"text": text}] if text else []) if self.turn.multimodal
                         else text}
        if self.call.thinking and reasoning is not None:
            message["reasoning_content"] = reasoning
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {"choices": [{"finish_reason": finish_reason, "message": message}]}

    def body(self, output: dict, usage: Usage) -> dict:
        return {"output": output, "usage": usage_body(usage), "request_id": self.call.request_id}


async def collect(call: Call, turn: Turn) -> dict:
    answer = await accumulate(call)
    shape = Shape(call, turn)
    return shape.body(shape.output(answer.text, answer.reasoning, answer.tool_calls, answer.finish.reason),
                      answer.finish.usage)


def event(n: int, kind: str, status: int, data: dict) -> bytes:
    """One SSE event as DashScope frames it (the SDK reads `event:error` and `status:`; the
    `:HTTP_STATUS/` comment is DashScope's own)."""
    return (f"id:{n}\nevent:{kind}\n:HTTP_STATUS/{status}\nstatus:{status}\ndata:".encode()
            + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n")


async def stream(call: Call, turn: Turn) -> AsyncIterator[bytes]:
    """An event per delta (the usage so far in each, as DashScope sends it), the last with the
    finish reason; an error after the start is an `event:error` that ends the stream."""
    shape = Shape(call, turn)
    so_far = Accumulated()
    n = 0

    def render(d) -> tuple[bytes]:
        nonlocal n
        so_far.add(d)
        t = type(d)
        if t is Finish:
            finish, usage = d.reason, d.usage
            output = (shape.output("", None, [], finish) if turn.incremental else
                      shape.output(so_far.text, so_far.reasoning, so_far.tool_calls, finish))
        elif turn.incremental:
            finish, usage = shape.running, call.usage_so_far()
            output = shape.output(d.text if t is TextDelta else "", d.text if t is ReasoningDelta else "",
                                  [tool_piece(d)] if t is ToolCallDelta else [], finish)
        else:
            finish, usage = shape.running, call.usage_so_far()
            output = shape.output(so_far.text, so_far.reasoning, so_far.tool_calls, finish)
        n += 1
        return (event(n, "result", 200, shape.body(output, usage)),)

    try:
        async for chunk in events(call, render):
            yield chunk
    except ModelStudioError as exc:
        yield event(n + 1, "error", exc.status, error_body(turn.rename(exc), call.request_id))


def tool_piece(d: ToolCallDelta) -> dict:
    return {"index": d.index, "id": d.id or "", "type": "function",
            "function": {"name": d.name or "", "arguments": d.arguments}}
