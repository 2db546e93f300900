"""A Chat Completions request: the call's own request (service/request.py's `ChatRequest`), read
from the body and validated in a worker thread; a refusal names the field as the request does."""

from __future__ import annotations

from fastapi import Request
from pydantic import ValidationError

from ...api.errors import validation_error
from ...service.request import ChatRequest
from ...workers import offload
from ..body import parse_json_object, read_json_body


async def read_chat_request(request: Request) -> tuple[ChatRequest, int]:
    raw = await read_json_body(request)
    return await offload(parse_chat_request, raw), len(raw)


def parse_chat_request(raw: bytes) -> ChatRequest:
    body = parse_json_object(raw)
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
