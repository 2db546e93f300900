"""The Anthropic Messages protocol (Claude Code, the `anthropic` SDKs), as a translation onto the
same chat call: the request becomes a chat request, the call's deltas become Anthropic's content
blocks and events. Keys, activation, the model card's rules, the context cache, the ledger (with
protocol "anthropic"), rate limits and the engine are the chat API's own.

Served at `/apps/anthropic/v1/messages` (Model Studio's base URL `.../apps/anthropic`) and
`/v1/messages`, with `/count_tokens` beside each. `thinking` blocks carry a signature that Moonserve
checks when a client sends them back (service/signatures.py).
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..engines.protocol import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from ..errors import InvalidParameter, ModelStudioError
from ..service.call import ChatCall, model_studio_error
from ..service.signatures import ReasoningSigner
from ..wire import ChatRequest
from ..workers import offload
from . import chat_replies
from .auth import require_key_or_x_api_key
from .body import parse_json, read_json_body
from .disconnect import unless_client_leaves
from .errors import request_id, validation_error

router = APIRouter()
PREFIXES = ("/apps/anthropic/v1", "/v1")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error",
               429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def error_body(exc: ModelStudioError, rid: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(exc.status, "api_error"), "message": exc.message},
            "request_id": rid}


def error_response(exc: ModelStudioError, rid: str) -> JSONResponse:
    return JSONResponse(error_body(exc, rid), status_code=exc.status, headers={**exc.headers, "request-id": rid})


# -- request ------------------------------------------------------------------------------------------

def _fail(where: str, message: str):
    raise InvalidParameter(f"{where}: {message}", param=where)


def _blocks(content, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        _fail(where, "must be a string or a list of content blocks")
    return content


def _text_of(content, where: str) -> str:
    texts = [b.get("text", "") for b in _blocks(content, where) if b.get("type") == "text"]
    if not all(isinstance(t, str) for t in texts):
        _fail(where, "a text block's text must be a string")
    return "".join(texts)


# The Messages fields this translation reads; any other (metadata, service_tier, container, ...) has no
# effect here and is named in X-Moonserve-Ignored-Params.
READ = {"model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k", "stop_sequences",
        "tools", "tool_choice", "thinking"}


def to_chat_body(body: dict, signer: ReasoningSigner, *, counting: bool = False) -> dict:
    """An Anthropic Messages request as the chat request it means."""
    if not isinstance(body.get("model"), str):
        _fail("model", "is required")
    max_tokens = body.get("max_tokens")
    if not counting and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        _fail("max_tokens", "is required: a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        _fail("messages", "is required: a non-empty list")
    chat: dict = {"model": body["model"], "messages": []}
    if not counting:
        chat["max_completion_tokens"] = max_tokens  # Anthropic's max_tokens bounds thinking and text
        if body.get("stream"):
            chat.update(stream=True, stream_options={"include_usage": True})
    out = chat["messages"]
    if body.get("system"):
        out.append({"role": "system", "content": _text_of(body["system"], "system")})
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            _fail(f"messages[{i}].role", "must be 'user' or 'assistant'")
        blocks = _blocks(m.get("content"), f"messages[{i}].content")
        if m["role"] == "user":
            out.extend(_user_messages(blocks, i))
        else:
            out.append(_assistant_message(blocks, i, signer))
    for key in ("temperature", "top_p", "top_k", "stop_sequences"):
        if key in body:
            chat["stop" if key == "stop_sequences" else key] = body[key]
    if body.get("tools"):
        if not isinstance(body["tools"], list):
            _fail("tools", "must be a list of tools")
        chat["tools"] = [_tool(t, f"tools[{k}]") for k, t in enumerate(body["tools"])]
    if "tool_choice" in body:
        chat.update(_tool_choice(body["tool_choice"]))
    elif body.get("tools"):
        chat["parallel_tool_calls"] = True  # Anthropic's default
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
            _fail("thinking.type", "must be 'enabled', 'disabled' or 'adaptive'")
        # budget_tokens cannot steer these models (Model Studio: thinking_budget cannot be used)
        chat["enable_thinking"] = thinking["type"] != "disabled"
    return chat


def _user_messages(blocks: list[dict], i: int) -> list[dict]:
    """Tool results become tool messages (they come first in Anthropic's user turn); the rest one
    user message."""
    out, parts = [], []
    for j, b in enumerate(blocks):
        where, kind = f"messages[{i}].content[{j}]", b.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": b.get("text", "")})
        elif kind == "image":
            source = b.get("source")
            if not isinstance(source, dict) or source.get("type") != "url":
                _fail(f"{where}.source", "only images by URL are accepted (base64 images are not supported)")
            parts.append({"type": "image_url", "image_url": {"url": source.get("url")}})
        elif kind == "tool_result":
            content = b.get("content", "")
            text = content if isinstance(content, str) else _text_of(content, f"{where}.content")
            out.append({"role": "tool", "tool_call_id": b.get("tool_use_id"),
                        "content": f"Error: {text}" if b.get("is_error") else text})
        else:
            _fail(f"{where}.type", f"{kind!r} blocks are not supported in user messages")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_message(blocks: list[dict], i: int, signer: ReasoningSigner) -> dict:
    text, reasoning, calls = [], None, []
    for j, b in enumerate(blocks):
        where, kind = f"messages[{i}].content[{j}]", b.get("type")
        if kind == "text":
            text.append(b.get("text", ""))
        elif kind == "thinking":
            thought, signature = b.get("thinking"), b.get("signature")
            if not isinstance(thought, str) or not isinstance(signature, str) or not signer.verify(thought, signature):
                _fail(f"{where}.signature", "the thinking block's signature does not match its text "
                      "(reasoning can only be sent back as Moonserve returned it)")
            reasoning = (reasoning or "") + thought
        elif kind == "redacted_thinking":
            continue  # never produced here; nothing the model could read
        elif kind == "tool_use":
            if not isinstance(b.get("name"), str) or not isinstance(b.get("id"), str):
                _fail(where, "a tool_use block needs an id and a name")
            calls.append({"id": b["id"], "type": "function",
                          "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})}})
        else:
            _fail(f"{where}.type", f"{kind!r} blocks are not supported in assistant messages")
    message: dict = {"role": "assistant", "content": "".join(text)}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool, where: str) -> dict:
    if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
        _fail(f"{where}.type", "only client tools (name, description, input_schema) are supported")
    return {"type": "function", "function": {"name": tool.get("name"), "description": tool.get("description", ""),
                                             "parameters": tool.get("input_schema") or {"type": "object"}}}


def _tool_choice(choice) -> dict:
    kind = choice.get("type") if isinstance(choice, dict) else None
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(kind)
    if kind == "tool":
        mapped = {"type": "function", "function": {"name": choice.get("name")}}
    if mapped is None:
        _fail("tool_choice.type", "must be 'auto', 'any', 'tool' or 'none'")
    return {"tool_choice": mapped, "parallel_tool_calls": not choice.get("disable_parallel_tool_use", False)}


async def read_request(request: Request, signer: ReasoningSigner, *, counting: bool = False,
                       ignored: list[str] | None = None) -> tuple[ChatRequest, int]:
    """The chat request; the fields without effect go to `ignored`."""
    raw = await read_json_body(request)

    def parse() -> ChatRequest:
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise InvalidParameter("The request body must be a JSON object", param="body")
        if ignored is not None:
            ignored.extend(sorted(set(body) - READ))
        try:
            return ChatRequest.model_validate(to_chat_body(body, signer, counting=counting))
        except ValidationError as exc:
            raise validation_error(exc) from None

    return await offload(parse), len(raw)


# -- reply --------------------------------------------------------------------------------------------

def usage_body(u: Usage) -> dict:
    """Anthropic counts cache reads apart from the input tokens."""
    return {"input_tokens": u.prompt_tokens - u.cached_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": u.cached_tokens, "output_tokens": u.completion_tokens}


def message_id(rid: str) -> str:
    return "msg_" + rid.replace("-", "")


async def collect(call: ChatCall, signer: ReasoningSigner) -> dict:
    chat = await chat_replies.collect(call)
    m, choice = chat["choices"][0]["message"], chat["choices"][0]
    content: list[dict] = []
    if m.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": m["reasoning_content"],
                        "signature": signer.sign(m["reasoning_content"])})
    if m["content"]:
        content.append({"type": "text", "text": m["content"]})
    for tc in m.get("tool_calls", []):
        try:
            arguments = json.loads(tc["function"]["arguments"] or "{}")
        except json.JSONDecodeError:
            arguments = {"_raw": tc["function"]["arguments"]}
        content.append({"type": "tool_use", "id": tc["id"], "name": tc["function"]["name"], "input": arguments})
    u = chat["usage"]
    usage = Usage(prompt_tokens=u["prompt_tokens"], completion_tokens=u["completion_tokens"],
                  cached_tokens=u["prompt_tokens_details"]["cached_tokens"])
    return {"id": message_id(call.request_id), "type": "message", "role": "assistant", "model": call.model,
            "content": content, "stop_reason": STOP_REASONS.get(choice["finish_reason"], "end_turn"),
            "stop_sequence": None, "usage": usage_body(usage)}


def _event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **data}, ensure_ascii=False,
                                                         separators=(",", ":")).encode() + b"\n\n"


async def stream(call: ChatCall, signer: ReasoningSigner) -> AsyncIterator[bytes]:
    """message_start, ping, content blocks (start, deltas, stop) in order, message_delta with the
    stop reason and usage, message_stop. An error after the start is an `error` event."""
    yield _event("message_start", {"message": {
        "id": message_id(call.request_id), "type": "message", "role": "assistant", "model": call.model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {**usage_body(call.usage_so_far()), "output_tokens": 0}}})
    yield _event("ping", {})
    index, open_kind, thought = -1, None, []

    def close() -> list[bytes]:
        out = []
        if open_kind == "thinking":
            out.append(_event("content_block_delta", {"index": index, "delta": {
                "type": "signature_delta", "signature": signer.sign("".join(thought))}}))
        if open_kind is not None:
            out.append(_event("content_block_stop", {"index": index}))
        return out

    try:
        async with aclosing(call.deltas()) as deltas:
            async for d in deltas:
                t = type(d)
                if t is Finish:
                    for e in close():
                        yield e
                    open_kind = None
                    yield _event("message_delta", {"delta": {"stop_reason": STOP_REASONS.get(d.reason, "end_turn"),
                                                             "stop_sequence": None},
                                                   "usage": {"output_tokens": d.usage.completion_tokens}})
                    yield _event("message_stop", {})
                    return
                if t is ToolCallDelta and d.id is not None or t is not ToolCallDelta and open_kind != (
                        "thinking" if t is ReasoningDelta else "text"):
                    if t is TextDelta and not d.text:
                        continue
                    for e in close():
                        yield e
                    index += 1
                    if t is ReasoningDelta:
                        open_kind, thought = "thinking", []
                        block = {"type": "thinking", "thinking": "", "signature": ""}
                    elif t is TextDelta:
                        open_kind, block = "text", {"type": "text", "text": ""}
                    else:
                        open_kind, block = "tool_use", {"type": "tool_use", "id": d.id, "name": d.name, "input": {}}
                    yield _event("content_block_start", {"index": index, "content_block": block})
                if t is ReasoningDelta:
                    thought.append(d.text)
                    yield _event("content_block_delta", {"index": index, "delta": {"type": "thinking_delta",
                                                                                   "thinking": d.text}})
                elif t is TextDelta:
                    yield _event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": d.text}})
                elif d.arguments:
                    yield _event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                                   "partial_json": d.arguments}})
    except ModelStudioError as exc:
        yield _event("error", {"error": error_body(exc, call.request_id)["error"]})


# -- routes -------------------------------------------------------------------------------------------

async def messages(request: Request):
    state, rid = request.app.state, request_id(request)
    signer = state.signer
    try:
        key = await run_in_threadpool(require_key_or_x_api_key, request)
        call = state.service.call(key, rid, protocol="anthropic")
        unread: list[str] = []
        await call.start(lambda: read_request(request, signer, ignored=unread))
    except ModelStudioError as exc:
        return error_response(exc, rid)
    headers = {"request-id": rid}
    if call.ignored or unread:
        headers["X-Moonserve-Ignored-Params"] = ",".join(call.ignored + unread)
    if call.stream:
        return StreamingResponse(stream(call, signer), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})
    try:
        body = await unless_client_leaves(request, call, collect(call, signer))
    except ModelStudioError as exc:
        return error_response(exc, rid)
    return body if isinstance(body, PlainTextResponse) else JSONResponse(body, headers=headers)


async def count_tokens(request: Request):
    state, rid = request.app.state, request_id(request)
    try:
        key = await run_in_threadpool(require_key_or_x_api_key, request)
        req, _ = await read_request(request, state.signer, counting=True)
        n = await state.service.count_tokens(key, req)
    except ModelStudioError as exc:
        return error_response(exc, rid)
    except Exception as exc:  # engine refusals (a prompt too long, a template that refuses)
        return error_response(model_studio_error(exc, rid), rid)
    return {"input_tokens": n}


for prefix in PREFIXES:
    router.add_api_route(f"{prefix}/messages", messages, methods=["POST"])
    router.add_api_route(f"{prefix}/messages/count_tokens", count_tokens, methods=["POST"])
