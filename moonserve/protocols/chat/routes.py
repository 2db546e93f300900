"""POST /chat/completions, at Model Studio's base URL `/compatible-mode/v1` and at `/v1`: the call
every other protocol translates into, so its request is the call's own (service/request.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ...accounts.store import ApiKey
from ...api.auth import require_key
from ...api.errors import error_response, request_id
from ...service.request import ChatRequest
from ..skeleton import Answer, serve_call
from . import reply
from .request import read_chat_request

router = APIRouter()
PREFIXES = ("/compatible-mode/v1", "/v1")

# The chat call's body in the OpenAPI document (the route reads and validates it itself, off the
# event loop, so FastAPI cannot derive it). Its models go to components/schemas (see app.py).
_chat_schema = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
OPENAPI_SCHEMAS: dict = _chat_schema.pop("$defs", {})
OPENAPI_SCHEMAS["ChatRequest"] = _chat_schema
CHAT_OPENAPI = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ChatRequest"}}}}}


async def chat_completions(request: Request, key: ApiKey = Depends(require_key)):
    call = request.app.state.service.call(key, request_id(request))
    return await serve_call(request, call, lambda: read_chat_request(request), Answer(
        "chat", lambda exc: error_response(request, exc), lambda: reply.stream(call),
        lambda: reply.collect(call)))



for prefix in PREFIXES:
    router.add_api_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"], openapi_extra=CHAT_OPENAPI)
