"""API keys: `Authorization: Bearer <key>` (and, for the Anthropic protocol, `x-api-key: <key>`),
valid in this server's region."""

from __future__ import annotations

from fastapi import Request

from ..accounts.availability import DatabaseUnavailable
from ..accounts.store import ApiKey
from ..errors import InvalidApiKey, ModelUnavailable


def require_key(request: Request) -> ApiKey:
    """A FastAPI dependency. Sync on purpose: FastAPI runs it in its thread pool, so the database
    lookup never blocks the event loop."""
    return authenticate(request, bearer_secret(request))


def require_key_or_x_api_key(request: Request) -> ApiKey:
    """The Anthropic SDKs send `x-api-key` (ANTHROPIC_API_KEY), or Bearer (ANTHROPIC_AUTH_TOKEN)."""
    secret = request.headers.get("x-api-key", "").strip() or bearer_secret(request)
    return authenticate(request, secret)


def bearer_secret(request: Request) -> str:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def authenticate(request: Request, secret: str) -> ApiKey:
    if not secret:
        raise InvalidApiKey(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>'."
        )
    state = request.app.state
    try:
        key = state.accounts.authenticate(secret)
    except DatabaseUnavailable:
        raise ModelUnavailable("The accounts database is unavailable and this key is not known to this node; "
                               "retry later", headers={"Retry-After": "5"}) from None
    # A key of another region is refused exactly like an unknown one.
    if key is None or key.region != state.config.server.region:
        raise InvalidApiKey()
    request.state.api_key = key
    return key
