"""API keys as a FastAPI dependency: `Authorization: Bearer <key>`, valid in this server's region."""

from __future__ import annotations

from fastapi import Request

from ..accounts.store import ApiKey
from ..errors import InvalidApiKey


def require_key(request: Request) -> ApiKey:
    """Sync on purpose: FastAPI runs it in its thread pool, so the database lookup never blocks
    the event loop."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise InvalidApiKey(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>'."
        )
    state = request.app.state
    key = state.store.authenticate(secret)
    # A key of another region is refused exactly like an unknown one.
    if key is None or key.region != state.config.server.region:
        raise InvalidApiKey()
    request.state.api_key = key
    return key
