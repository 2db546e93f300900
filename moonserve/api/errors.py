"""The one place where errors become Model Studio's error body. No traceback ever leaves here."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..accounts.availability import is_database_fault
from ..errors import InternalError, InvalidParameter, ModelStudioError, ModelUnavailable

log = logging.getLogger("moonserve.api")


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = str(uuid.uuid4())
    return rid


def error_response(request: Request, exc: ModelStudioError) -> JSONResponse:
    rid = request_id(request)
    return JSONResponse(exc.body(rid), status_code=exc.status, headers={**exc.headers, "x-request-id": rid})


UNION_BRANCHES = {"str", "int", "float", "bool", "dict", "list", "none"}


def field_path(loc: tuple) -> str:
    """('messages', 0, 'content') -> 'messages[0].content'; drops pydantic's union-branch names and
    the discriminator tag that follows an element of a tagged union."""
    out = ""
    tagged = skip_tag = False
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            skip_tag, tagged = tagged, False
        elif isinstance(part, str) and (part.startswith(("function-", "tagged-")) or "[" in part
                                        or part in UNION_BRANCHES):
            tagged = "tagged-union" in part  # a union branch name, not a field
        elif skip_tag:
            skip_tag = False  # the discriminator's value (e.g. "video_url"), not a field
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_error(exc: ValidationError | RequestValidationError) -> InvalidParameter:
    # For a union, pydantic reports every branch; the deepest error is the one about the user's value.
    first = max(exc.errors(), key=lambda e: len(e.get("loc", ())))
    path = field_path(tuple(first.get("loc", ())))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return InvalidParameter(f"Missing required parameter: {path}", param=path)
    if first.get("type") == "extra_forbidden":
        return InvalidParameter(f"Unrecognized parameter: {path}", param=path)
    return InvalidParameter(f"Invalid value for {path}: {msg}", param=path)


def install(app: FastAPI) -> None:
    @app.exception_handler(ModelStudioError)
    async def _model_studio(request: Request, exc: ModelStudioError):
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return error_response(request, validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        err = ModelStudioError(str(exc.detail))
        err.status = exc.status_code
        err.code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
        err.type = "invalid_request_error"
        return error_response(request, err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        if is_database_fault(exc):  # a fault we can name: the accounts database is away
            request.app.state.database.failed(exc)
            log.warning("request %s: the accounts database is unavailable: %s", request_id(request), exc)
            return error_response(request, ModelUnavailable("The accounts database is unavailable; retry later",
                                                            headers={"Retry-After": "5"}))
        log.exception("request %s failed", request_id(request))
        return error_response(request, InternalError())
