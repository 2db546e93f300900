"""A protocol's request body: JSON only, read in chunks and refused as soon as it passes the cap, parsed
and validated in a worker thread (a 20 MB body must not hold the event loop).

What `json.loads` accepts but the rest of the server cannot take is refused here, naming the place:
nesting deeper than MAX_DEPTH, and lone UTF-16 surrogates (`"\\ud800"`), which no UTF-8 text,
tokenizer or database can hold.
"""

from __future__ import annotations

import json
import re
from typing import Callable, TypeVar

from fastapi import Request
from pydantic import ValidationError

from ..errors import InvalidParameter, RequestTooLarge
from ..service.media import MAX_REQUEST_BYTES
from ..service.request import ChatRequest
from ..workers import offload
from ..api.errors import validation_error

T = TypeVar("T")
MAX_DEPTH = 64  # a tool's schema may nest 48 levels (service/schemas.py), inside 4 of the body's
# A \uD800-\uDFFF escape: only then can a parsed string hold a lone surrogate.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def read_json_body(request: Request, cap: int = MAX_REQUEST_BYTES) -> bytes:
    content_type = request.headers.get("content-type")
    if content_type is not None:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime != "application/json" and not mime.endswith("+json"):
            raise InvalidParameter(f"Content-Type must be application/json, not {mime or 'empty'!r}",
                                   param="Content-Type")
    return await read_capped_body(request, cap, "The request may not exceed 100 MB (text plus images and videos)")


async def read_capped_body(request: Request, cap: int, message: str) -> bytes:
    """The body, read in chunks; a 413 as soon as it passes `cap` (or declares more). The rest stays
    unread: the connection closes after the reply, so the client stops sending."""
    too_large = RequestTooLarge(message, param="body", headers={"Connection": "close"})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise too_large  # stop reading here
    return bytes(body)


def translated_reader(request: Request, translate: Callable[[dict], tuple[dict, T]], turns: list[T]):
    """The call's body reader for a protocol that translates its request into a chat request:
    `translate(body)` gives the chat request and what else the protocol keeps of the request (its
    turn). The turn goes to `turns` as soon as it is known, so that a refusal found later, by the
    chat rules, can be named in the request's own terms."""

    def parse(raw: bytes) -> ChatRequest:
        chat, turn = translate(parse_json_object(raw))
        turns.append(turn)
        try:
            return ChatRequest.model_validate(chat)
        except ValidationError as exc:
            raise validation_error(exc) from None

    async def read() -> tuple[ChatRequest, int]:
        raw = await read_json_body(request)
        return await offload(parse, raw), len(raw)

    return read


def parse_json_object(raw: bytes) -> dict:
    """A JSON object body. The guide's Node.js example sends `extra_body: {...}` literally (the Node
    SDK passes unknown keys through); Model Studio reads those fields as top-level ones, and so do we."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object", param="body")
    extra = body.pop("extra_body", None)
    if isinstance(extra, dict):
        for k, v in extra.items():
            body.setdefault(k, v)
    return body


def parse_json(raw: bytes):
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidParameter(f"The request body is nested too deeply (at most {MAX_DEPTH} levels)",
                               param="body") from None
    except ValueError as exc:  # not JSON, not UTF-8, or a number past Python's 4,300-digit limit
        raise InvalidParameter(f"The request body is not valid JSON: {exc}", param="body") from None
    check_values(value, strings=SURROGATE_ESCAPE.search(raw) is not None)
    return value


def check_values(value, *, strings: bool) -> None:
    """Depth, and (when `strings`) that every string and key is valid Unicode text. Iterative."""
    stack = [(value, "body", 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, str):
            if strings:
                _check_text(node, where)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise InvalidParameter(f"{where}: the request body is nested too deeply (at most {MAX_DEPTH} levels)",
                                   param=where)
        if isinstance(node, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node))
        else:
            for k, v in node.items():
                if strings:
                    _check_text(k, where)
                stack.append((v, k if where == "body" else f"{where}.{k}", depth + 1))


def _check_text(s: str, where: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParameter(f"{where}: contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text",
                               param=where) from None
