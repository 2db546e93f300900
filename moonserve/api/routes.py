"""Routes: parse, call the service, shape the reply. Nothing else lives here."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from ..accounts.ledger import GROUPS, parse_since
from ..accounts.store import ApiKey
from ..catalog import cards
from ..errors import InvalidParameter
from ..wire import ChatRequest
from . import chat_replies
from .auth import require_key
from .body import read_chat_request
from .call_route import Answer, serve_call
from .errors import error_response, request_id

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
        "chat", lambda exc: error_response(request, exc), lambda: chat_replies.stream(call),
        lambda: chat_replies.collect(call)))


async def list_models(request: Request, key: ApiKey = Depends(require_key)):
    active = await run_in_threadpool(request.app.state.accounts.activated_models, key.workspace_id)
    created = request.app.state.started_at
    data = [
        {"id": c.id, "object": "model", "created": created, "owned_by": c.owned_by}
        for c in cards().values()
        if c.id in active
    ]
    return {"object": "list", "data": data}


async def usage_report(request: Request, since: str | None = None, by: str = "model",
                       key: ApiKey = Depends(require_key)):
    """The calling key's workspace only: `?since=ISO-8601&by=model|key|day|protocol`."""
    ledger = request.app.state.accounting.ledger
    if ledger is None:
        raise InvalidParameter("the usage ledger is turned off on this server", param="by")
    if by not in GROUPS:
        raise InvalidParameter(f"by must be one of {', '.join(GROUPS)}", param="by")
    try:
        since_at = parse_since(since)
    except ValueError as exc:
        raise InvalidParameter(f"since: {exc}", param="since") from None
    rows = await run_in_threadpool(ledger.report, key.workspace_id, since_at, by)
    return {"object": "usage", "workspace": key.workspace_id, "by": by, "since": since,
            "currency": request.app.state.config.billing.currency, "data": rows}


for prefix in PREFIXES:
    router.add_api_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"], openapi_extra=CHAT_OPENAPI)
    router.add_api_route(f"{prefix}/models", list_models, methods=["GET"])
    router.add_api_route(f"{prefix}/usage", usage_report, methods=["GET"])


@router.get("/health")
async def health(request: Request):
    """`ok`; `degraded` while the accounts database is away or records wait in the journal (known
    keys are served, records are journaled); `unavailable` (503) while calls are refused because
    neither the database nor the journal could keep their records."""
    state = request.app.state
    database, accounting = state.database, state.accounting
    ledger = accounting.state()
    status = ("unavailable" if not accounting.can_bill else
              "ok" if database.up and ledger["database_writes"] and not ledger["journal_pending"] else "degraded")
    body = {"status": status, "database": database.as_json(), "ledger": ledger,
            "deployments": {name: e.stats() for name, e in state.engines.items()}}
    return JSONResponse(body, status_code=503 if status == "unavailable" else 200)


@router.get("/metrics")
async def metrics(request: Request):
    return PlainTextResponse(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
