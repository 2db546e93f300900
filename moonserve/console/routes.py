"""The console's pages and forms, served at /console by the same process.

Server-rendered HTML (Jinja2, autoescaped) with a little JavaScript for the dialogs, the copy button
and the playground's stream. Every change is a POST that carries the session's CSRF token; the
sign-in form carries a double-submit token of its own. The pages call the same store, ledger and
chat service as the API: what they show is the ledger's, exactly.
"""

from __future__ import annotations

import csv
import io
import secrets
from urllib.parse import parse_qsl
from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..accounts.console_users import Session
from ..accounts.ledger import parse_since
from ..accounts.store import ApiKey
from ..catalog import cards
from ..errors import InvalidParameter, ModelStudioError, RequestTooLarge
from ..service.request import ChatRequest
from ..workers import offload
from ..protocols.chat import reply as chat_replies
from ..protocols.skeleton import Answer, serve_call
from ..protocols.body import parse_json, read_capped_body, read_json_body
from ..api.errors import request_id, validation_error
from .charts import bar_chart

router = APIRouter(prefix="/console", include_in_schema=False)
STATIC = StaticFiles(directory=Path(__file__).parent / "static")
COOKIE, LOGIN_COOKIE = "moonserve_session", "moonserve_signin"
FORM_BYTES = 64 * 1024
PERIODS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "365d": "Last year"}
templates = Environment(loader=PackageLoader("moonserve.console", "templates"), autoescape=select_autoescape())


def page(request: Request, name: str, session: Session | None, status: int = 200, **context) -> HTMLResponse:
    html = templates.get_template(name).render(session=session, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                   "script-src 'self'; frame-ancestors 'none'"})


class NotSignedIn(Exception):
    """No valid session: a page goes to the sign-in form, a change is refused (401)."""


class Refused(Exception):
    """The signed-in user may not do this (another workspace, a form without its token): a 403 page."""


def install(app) -> None:
    app.mount("/console/static", STATIC, name="console-static")
    app.include_router(router)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn):
        if request.method == "GET":
            return RedirectResponse("/console/login", status_code=303)
        return page(request, "refused.html", None, status=401, message="Sign in first.")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        token = request.cookies.get(COOKIE)
        session = await run_in_threadpool(request.app.state.console_users.session, token) if token else None
        return page(request, "refused.html", session, status=403, message=str(exc),
                    workspace=session.user.workspace_id if session else None,
                    workspaces=[session.user.workspace_id] if session else [])


async def current(request: Request) -> Session:
    token = request.cookies.get(COOKIE)
    session = await run_in_threadpool(request.app.state.console_users.session, token) if token else None
    if session is None:
        raise NotSignedIn()
    return session


async def posted(request: Request) -> dict:
    """An HTML form (urlencoded; the console posts nothing else), at most FORM_BYTES."""
    try:
        raw = await read_capped_body(request, FORM_BYTES, "A console form may not exceed 64 KB")
    except RequestTooLarge as exc:
        raise Refused(exc.message) from None
    return dict(parse_qsl(raw.decode("utf-8", "replace"), max_num_fields=100))


async def form(request: Request, session: Session) -> dict:
    """The posted form, once its CSRF token matches the session's."""
    data = await posted(request)
    if not secrets.compare_digest(str(data.get("csrf", "")), session.csrf_token):
        raise Refused("This form is missing its security token; reload the page and try again.")
    return data


def workspace_of(request: Request, session: Session, asked: str | None = None) -> str:
    """A member works in its own workspace only; an owner in any (its own by default)."""
    asked = asked or request.query_params.get("workspace") or session.user.workspace_id
    if asked != session.user.workspace_id and not session.user.is_owner:
        raise Refused("You can only see your own workspace.")
    return asked


def secure_cookie(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


# -- signing in and out ---------------------------------------------------------------------------

@router.get("/login")
async def login_page(request: Request, error: str | None = None):
    token = secrets.token_urlsafe(24)
    r = page(request, "login.html", None, status=401 if error else 200, error=error, csrf=token)
    r.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie(request),
                 path="/console")
    return r


@router.post("/login")
async def login(request: Request):
    data = await posted(request)
    if not data.get("csrf") or not secrets.compare_digest(str(data["csrf"]), request.cookies.get(LOGIN_COOKIE, "")):
        return await login_page(request, "This form is missing its security token; try again.")
    # Argon2 is memory-hard by design: sign-ins share the bounded worker pool, so a flood of them
    # cannot take the server's memory
    result = await offload(request.app.state.console_users.sign_in, str(data.get("username", "")),
                           str(data.get("password", "")))
    if isinstance(result, str):
        return await login_page(request, result)
    token, _ = result
    r = RedirectResponse("/console/models", status_code=303)
    r.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie(request), path="/",
                 max_age=12 * 3600)
    r.delete_cookie(LOGIN_COOKIE, path="/console")
    return r


@router.post("/logout")
async def logout(request: Request):
    session = await current(request)
    await form(request, session)
    await run_in_threadpool(request.app.state.console_users.sign_out, request.cookies[COOKIE])
    r = RedirectResponse("/console/login", status_code=303)
    r.delete_cookie(COOKIE, path="/")
    return r


@router.get("")
async def home():
    return RedirectResponse("/console/models", status_code=303)


# -- models ---------------------------------------------------------------------------------------

@router.get("/models")
async def models(request: Request, q: str = ""):
    session = await current(request)
    ws = workspace_of(request, session)
    state = request.app.state
    active = await run_in_threadpool(state.store.activated_models, ws)
    config, health = state.config, {name: e.stats() for name, e in state.engines.items()}
    shown = []
    for c in cards().values():
        if q.strip() and q.strip().lower() not in c.id.lower():
            continue
        names = config.routes[c.id]
        deployments = [{"name": n, "engine": config.deployments[n].engine,
                        "healthy": health[n].get("healthy", not health[n].get("loading", False)),
                        "context_length": state.engines[n].context_length,
                        "max_output_tokens": config.deployments[n].max_output_tokens} for n in names]
        prices = config.prices.get(c.id, {})
        shown.append({"card": c, "active": c.id in active, "deployments": deployments,
                      "input_price": prices.get("input", c.input_price),
                      "output_price": prices.get("output", c.output_price),
                      "cached_price": float(prices.get("input", c.input_price)) * float(c.cached_ratio)})
    return page(request, "models.html", session, q=q, models=shown, workspace=ws,
                workspaces=await _workspaces(request, session), currency=config.billing.currency)


@router.post("/models/activation")
async def set_activation(request: Request):
    session = await current(request)
    data = await form(request, session)
    ws = workspace_of(request, session, data.get("workspace"))
    model, store = str(data.get("model", "")), request.app.state.store
    if model not in cards():
        raise Refused(f"No model {model!r} in the catalog.")
    if data.get("action") == "activate":
        await run_in_threadpool(store.activate, ws, model)
    else:
        await run_in_threadpool(store.deactivate, ws, model)
    return RedirectResponse(f"/console/models?workspace={ws}", status_code=303)


async def _workspaces(request: Request, session: Session) -> list[str]:
    if not session.user.is_owner:
        return [session.user.workspace_id]
    return await run_in_threadpool(request.app.state.store.list_workspaces)


# -- API keys -------------------------------------------------------------------------------------

@router.get("/keys")
async def keys(request: Request, created: str | None = None):
    session = await current(request)
    ws = workspace_of(request, session)
    listed = await run_in_threadpool(request.app.state.store.list_keys, ws)
    return page(request, "keys.html", session, keys=listed, workspace=ws, secret=None,
                workspaces=await _workspaces(request, session))


@router.post("/keys")
async def key_action(request: Request):
    session = await current(request)
    data = await form(request, session)
    ws = workspace_of(request, session, data.get("workspace"))
    state = request.app.state
    if data.get("action") == "create":
        key, secret = await run_in_threadpool(state.store.create_key, ws, state.config.server.region)
        listed = await run_in_threadpool(state.store.list_keys, ws)
        # the secret is in this one page, never again
        return page(request, "keys.html", session, keys=listed, workspace=ws, secret=secret, new_key=key,
                    workspaces=await _workspaces(request, session))
    key_id = str(data.get("key_id", ""))
    if key_id not in {k.id for k in await run_in_threadpool(state.store.list_keys, ws)}:
        raise Refused("No such key in this workspace.")
    await run_in_threadpool(state.store.revoke_key, key_id)
    return RedirectResponse(f"/console/keys?workspace={ws}", status_code=303)


# -- usage ----------------------------------------------------------------------------------------

async def usage_rows(request: Request, ws: str, since: str, by: str) -> list[dict]:
    ledger = request.app.state.accounting.ledger
    if ledger is None:
        return []
    return await run_in_threadpool(ledger.report, ws, parse_since(since), by)


@router.get("/usage")
async def usage(request: Request, since: str = "7d"):
    session = await current(request)
    ws = workspace_of(request, session)
    since = since if since in PERIODS else "7d"
    sections = []
    for by, title in (("day", "By day"), ("model", "By model"), ("key", "By API key")):
        rows = await usage_rows(request, ws, since, by)
        for r in rows:
            r["total_tokens"] = r["prompt_tokens"] + r["completion_tokens"]
            r["cached_share"] = f"{100 * r['cached_tokens'] / r['prompt_tokens']:.0f}%" if r["prompt_tokens"] else "-"
        sections.append({"by": by, "title": title, "rows": rows,
                         "tokens_chart": bar_chart([(r["group"], r["total_tokens"]) for r in rows], "tokens"),
                         "cost_chart": bar_chart([(r["group"], float(r["cost_total"])) for r in rows], "cost")})
    return page(request, "usage.html", session, sections=sections, since=since, periods=PERIODS, workspace=ws,
                workspaces=await _workspaces(request, session), currency=request.app.state.config.billing.currency)


CSV_COLUMNS = ["group", "requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens",
               "cost_input", "cost_cached", "cost_output", "cost_total", "currency"]


@router.get("/usage.csv")
async def usage_csv(request: Request, since: str = "7d", by: str = "day"):
    session = await current(request)
    ws = workspace_of(request, session)
    if by not in ("day", "model", "key") or since not in PERIODS:
        raise Refused("by is day, model or key; since one of " + ", ".join(PERIODS))
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(await usage_rows(request, ws, since, by))
    name = f"moonserve-usage-{ws}-{by}-{since}.csv"
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# -- console users (owners) ------------------------------------------------------------------------

def owner_only(session: Session) -> None:
    if not session.user.is_owner:
        raise Refused("Only an owner manages console users.")


@router.get("/users")
async def users(request: Request):
    session = await current(request)
    owner_only(session)
    listed = await run_in_threadpool(request.app.state.console_users.list)
    return page(request, "users.html", session, users=listed, workspace=workspace_of(request, session),
                workspaces=await _workspaces(request, session), created=None)


@router.post("/users")
async def user_action(request: Request):
    from ..accounts.console_users import UserError, new_password

    session = await current(request)
    owner_only(session)
    data = await form(request, session)
    state, created, error = request.app.state, None, None
    username = str(data.get("username", "")).strip()
    try:
        if data.get("action") == "add":
            ws = str(data.get("user_workspace", "")).strip() or "default"
            password = new_password()
            await run_in_threadpool(state.store.ensure_workspace, ws)
            await run_in_threadpool(state.console_users.add, username, password, str(data.get("role", "member")), ws)
            created = (username, password)
        elif username == session.user.username:
            raise UserError("You cannot remove yourself.")
        elif not await run_in_threadpool(state.console_users.remove, username):
            raise UserError(f"No user {username!r}.")
    except UserError as exc:
        error = str(exc)
    listed = await run_in_threadpool(state.console_users.list)
    return page(request, "users.html", session, status=400 if error else 200, users=listed, created=created,
                error=error, workspace=workspace_of(request, session), workspaces=await _workspaces(request, session))


# -- playground -----------------------------------------------------------------------------------

@router.get("/playground")
async def playground(request: Request):
    session = await current(request)
    ws = workspace_of(request, session)
    active = await run_in_threadpool(request.app.state.store.activated_models, ws)
    return page(request, "playground.html", session, models=[m for m in cards() if m in active], workspace=ws,
                workspaces=await _workspaces(request, session))


@router.post("/playground/chat")
async def playground_chat(request: Request):
    """The same chat call as the API, for the signed-in user's workspace (ledger key `console`)."""
    session = await current(request)
    if not secrets.compare_digest(request.headers.get("x-csrf-token", ""), session.csrf_token):
        raise Refused("This request is missing its security token; reload the page.")
    state, rid = request.app.state, request_id(request)
    try:
        raw = await read_json_body(request)
        asked = parse_json(raw)
        ws = workspace_of(request, session, asked.get("workspace"))
        req = ChatRequest.model_validate({
            "model": asked.get("model"), "stream": True, "stream_options": {"include_usage": True},
            "enable_thinking": bool(asked.get("thinking")),
            "messages": [{"role": "user", "content": str(asked.get("message", ""))}]})
    except ModelStudioError as exc:
        return JSONResponse(exc.body(rid), exc.status)
    except AttributeError:
        return JSONResponse(InvalidParameter("The request must be a JSON object", param="body").body(rid), 400)
    except ValidationError as exc:
        err = validation_error(exc)
        return JSONResponse(err.body(rid), err.status)
    key = ApiKey(id="console", workspace_id=ws, region=state.config.server.region, hint="console",
                 created_at=datetime.now(timezone.utc), last_used_at=None, revoked_at=None)
    call = state.service.call(key, rid)

    async def reader():
        return req, len(raw)

    return await serve_call(request, call, reader, Answer(
        "chat", lambda exc: JSONResponse(exc.body(rid), exc.status), lambda: chat_replies.stream(call),
        lambda: chat_replies.collect(call)))
