"""POST /api/v1/services/aigc/text-generation/generation and .../multimodal-generation/generation:
DashScope's native API, as the `dashscope` SDKs call it (`Generation.call`,
`MultiModalConversation.call`). A stream is asked for with `X-DashScope-SSE: enable` (or an
`Accept: text/event-stream`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...api.auth import require_key
from ...api.errors import request_id
from ...errors import ModelStudioError
from ..body import translated_reader
from ..skeleton import Answer, serve_call
from . import reply
from .request import Turn, to_chat_body

router = APIRouter()
BASE = "/api/v1/services/aigc"


def error_response(exc: ModelStudioError, rid: str) -> JSONResponse:
    return JSONResponse(reply.error_body(exc, rid), status_code=exc.status,
                        headers={**exc.headers, "x-request-id": rid})


def wants_stream(request: Request) -> bool:
    return (request.headers.get("x-dashscope-sse", "").strip().lower() == "enable"
            or "text/event-stream" in request.headers.get("accept", ""))


def generation(multimodal: bool):
    async def generate(request: Request):
        rid = request_id(request)
        try:
            key = await run_in_threadpool(require_key, request)
        except ModelStudioError as exc:
            return error_response(exc, rid)
        call = request.app.state.service.call(key, rid, protocol="dashscope")
        turns: list[Turn] = []
        stream = wants_stream(request)
        read = translated_reader(request, lambda body: to_chat_body(body, multimodal=multimodal, stream=stream), turns)
        return await serve_call(request, call, read, Answer(
            "dashscope", lambda exc: error_response(exc, rid),
            stream=lambda: reply.stream(call, turns[0]), collect=lambda: reply.collect(call, turns[0]),
            ignored=lambda: turns[0].ignored, rename=lambda exc: turns[0].rename(exc) if turns else exc))

    return generate


router.add_api_route(f"{BASE}/text-generation/generation", generation(False), methods=["POST"])
router.add_api_route(f"{BASE}/multimodal-generation/generation", generation(True), methods=["POST"])
