"""Routes: parse, call the service, shape the reply. Nothing else lives here."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..accounts.ledger import parse_since
from ..accounts.store import ApiKey
from ..catalog import cards
from ..errors import InvalidParameter, ModelStudioError, RequestTooLarge
from ..service.media import MAX_REQUEST_BYTES
from ..service.accounting import CLIENT_CLOSED, Call
from ..wire import ChatRequest
from . import responses
from .auth import require_key
from .errors import request_id, validation_error

router = APIRouter()
PREFIXES = ("/compatible-mode/v1", "/v1")


async def read_chat_request(request: Request) -> tuple[ChatRequest, int]:
    raw = await request.body()
    if len(raw) > MAX_REQUEST_BYTES:
        raise RequestTooLarge("The request may not exceed 100 MB (text plus images and videos)", param="body")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"The request body is not valid JSON: {exc}", param="body") from None
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object", param="body")
    # The guide's Node.js example sends `extra_body: {...}` literally (the Node SDK passes unknown
    # keys through); Model Studio reads those fields as top-level ones, and so do we.
    extra = body.pop("extra_body", None)
    if isinstance(extra, dict):
        for k, v in extra.items():
            body.setdefault(k, v)
    try:
        return ChatRequest.model_validate(body), len(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def chat_completions(request: Request, key: ApiKey = Depends(require_key)):
    state = request.app.state
    rid = request_id(request)
    started = time.perf_counter()
    call = Call(rid, key)
    recorder = responses.Recorder(state.accounting, call)
    try:
        await run_in_threadpool(state.accounting.admit, call)
        req, size = await read_chat_request(request)
        call.model, call.stream = req.model, req.stream
        card = await run_in_threadpool(state.service.authorize_model, key, req.model)
        run = await state.service.start(key, req, card, size)
    except ModelStudioError as exc:
        state.metrics.requests.labels(call.model if call.model in cards() else "-", str(exc.status)).inc()
        await recorder.finish(exc.status, None, exc.code)
        raise
    except Exception:  # a fault of ours (the engine's, say): still one record, then a plain 500
        state.metrics.requests.labels(call.model if call.model in cards() else "-", "500").inc()
        await recorder.finish(500, None, "InternalError")
        raise
    state.metrics.ttft.labels(req.model).observe(time.perf_counter() - started)
    state.metrics.requests.labels(req.model, "200").inc()
    headers = {"x-request-id": rid}
    if run.ignored:
        headers["X-Moonserve-Ignored-Params"] = ",".join(run.ignored)

    if req.stream:
        return StreamingResponse(
            responses.stream(run, rid, recorder),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # Non-stream: generate, but stop as soon as the client goes away.
    work = asyncio.ensure_future(responses.collect(run, rid))
    watch = asyncio.ensure_future(_until_disconnect(request))
    await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        await run.deltas.aclose()
        await recorder.finish(CLIENT_CLOSED, run.meter)
        return PlainTextResponse("", status_code=CLIENT_CLOSED)
    watch.cancel()
    try:
        body, usage = work.result()
    except ModelStudioError as exc:
        await recorder.finish(exc.status, run.meter, exc.code)
        raise
    except Exception:
        await recorder.finish(500, run.meter, "InternalError")
        raise
    await recorder.finish(200, usage)  # before the reply goes out: a crash after this loses nothing
    return JSONResponse(body, headers=headers)


async def list_models(request: Request, key: ApiKey = Depends(require_key)):
    active = await run_in_threadpool(request.app.state.store.activated_models, key.workspace_id)
    created = request.app.state.started_at
    data = [
        {"id": c.id, "object": "model", "created": created, "owned_by": c.owned_by}
        for c in cards().values()
        if c.id in active
    ]
    return {"object": "list", "data": data}


async def usage_report(request: Request, since: str | None = None, by: str = "model",
                       key: ApiKey = Depends(require_key)):
    """The calling key's workspace only: `?since=ISO-8601&by=model|key|day`."""
    ledger = request.app.state.accounting.ledger
    if ledger is None:
        raise InvalidParameter("the usage ledger is turned off on this server", param="by")
    if by not in ("model", "key", "day"):
        raise InvalidParameter("by must be one of model, key, day", param="by")
    try:
        since_at = parse_since(since)
    except ValueError as exc:
        raise InvalidParameter(f"since: {exc}", param="since") from None
    rows = await run_in_threadpool(ledger.report, key.workspace_id, since_at, by)
    return {"object": "usage", "workspace": key.workspace_id, "by": by, "since": since,
            "currency": request.app.state.config.billing.currency, "data": rows}


for prefix in PREFIXES:
    router.add_api_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"])
    router.add_api_route(f"{prefix}/models", list_models, methods=["GET"])
    router.add_api_route(f"{prefix}/usage", usage_report, methods=["GET"])


@router.get("/health")
async def health(request: Request):
    engines = request.app.state.engines
    return {"status": "ok", "deployments": {name: e.stats() for name, e in engines.items()}}


@router.get("/metrics")
async def metrics(request: Request):
    return PlainTextResponse(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
