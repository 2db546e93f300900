"""A non-stream reply is computed while the client waits in silence: end its call when it leaves."""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

from fastapi import Request
from fastapi.responses import PlainTextResponse

from ..errors import ClientClosedRequest
from ..service.call import Call

T = TypeVar("T")


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, call: Call, reply: Awaitable[T]) -> T | PlainTextResponse:
    """`reply`'s result; if the client goes away first, the call ends (recorded as 499) and the
    result is an empty 499 that nobody reads."""
    watch = asyncio.ensure_future(_until_disconnect(request))
    watch.add_done_callback(lambda t: t.cancelled() or call.end(ClientClosedRequest()))
    try:
        return await reply
    except ClientClosedRequest:
        return PlainTextResponse("", status_code=ClientClosedRequest.status)
    finally:
        watch.cancel()
