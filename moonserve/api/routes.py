"""The routes beside the protocols: the models a key may call, its usage, /health and /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from ..accounts.ledger import GROUPS, parse_since
from ..accounts.store import ApiKey
from ..catalog import cards
from ..errors import InvalidParameter
from .auth import require_key

router = APIRouter()
PREFIXES = ("/compatible-mode/v1", "/v1")


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
