"""POST /messages (plain or streamed) and /messages/count_tokens, at Model Studio's base URL
`.../apps/anthropic` (`/apps/anthropic/v1/...`) and at `/v1/...`.

An Anthropic call is a chat call with protocol "anthropic": keys (`x-api-key` or Bearer), activation,
the model card's rules, the context cache, the ledger, rate limits and the engine are the chat API's
own; the request is translated before the call parses it (request.py), and the call's deltas become
Anthropic's content blocks and events (reply.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...errors import ModelStudioError
from ...service.call import model_studio_error
from ...service.signatures import ReasoningSigner
from ...api.auth import require_key_or_x_api_key
from ..body import translated_reader
from ..skeleton import Answer, serve_call
from ...api.errors import request_id
from . import reply
from .request import Turn, to_chat_body

router = APIRouter()
PREFIXES = ("/apps/anthropic/v1", "/v1")


def error_response(exc: ModelStudioError, rid: str) -> JSONResponse:
    return JSONResponse(reply.error_body(exc, rid), status_code=exc.status,
                        headers={**exc.headers, "request-id": rid})


def read_turn(request: Request, signer: ReasoningSigner, turns: list[Turn], *, counting: bool = False):
    """The call's body reader: the chat request the Anthropic request means."""
    return translated_reader(request, lambda body: to_chat_body(body, signer, counting=counting), turns)


def _renamed(turns: list[Turn]):
    return lambda exc: turns[0].rename(exc) if turns else exc


async def messages(request: Request):
    state, rid = request.app.state, request_id(request)
    signer = state.signer
    turns: list[Turn] = []
    try:
        key = await run_in_threadpool(require_key_or_x_api_key, request)
    except ModelStudioError as exc:
        return error_response(exc, rid)
    call = state.service.call(key, rid, protocol="anthropic")

    def turn() -> Turn:
        return turns[0]

    return await serve_call(request, call, read_turn(request, signer, turns), Answer(
        "anthropic", lambda exc: error_response(exc, rid),
        stream=lambda: reply.stream(call, signer, turn()), collect=lambda: reply.collect(call, signer, turn()),
        request_id_header="request-id", ignored=lambda: turn().ignored, rename=_renamed(turns)))


async def count_tokens(request: Request):
    state, rid = request.app.state, request_id(request)
    turns: list[Turn] = []
    try:
        key = await run_in_threadpool(require_key_or_x_api_key, request)
        req, _ = await read_turn(request, state.signer, turns, counting=True)()
        n = await state.service.count_tokens(key, req)
    except Exception as exc:  # a refusal; an engine's too (a prompt too long, a template that refuses)
        error = _renamed(turns)(model_studio_error(exc, rid))
        return error_response(error, rid)
    return {"input_tokens": n}


for prefix in PREFIXES:
    router.add_api_route(f"{prefix}/messages", messages, methods=["POST"])
    router.add_api_route(f"{prefix}/messages/count_tokens", count_tokens, methods=["POST"])
