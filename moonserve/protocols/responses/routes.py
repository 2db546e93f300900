"""POST /responses (plain or streamed), GET and DELETE /responses/{id}.

A Responses call is a chat call with protocol "responses": the request is translated before the
call parses it, the call's deltas become output items, and a completed response is stored (unless
`store` is false) for `previous_response_id` and GET.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from itertools import count
from typing import AsyncIterator

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from ...accounts.store import ApiKey
from ...accounts.stored_responses import StoredResponses
from ...errors import InternalError, InvalidParameter, ModelStudioError, NotFound
from ...service.call import Call
from ...service.signatures import ReasoningSigner
from ...api.auth import require_key
from ..body import translated_reader
from ..accumulated import each_delta
from ..skeleton import Answer, events, serve_call
from ...api.errors import error_response, request_id
from .reply import OutputBuilder, response_object
from .request import Turn, fail, to_chat_body, with_ids

log = logging.getLogger("moonserve.responses")
router = APIRouter()
PREFIXES = ("/api/v2/apps/protocols/compatible-mode/v1", "/v1")


def read_turn(request: Request, key: ApiKey, stored: StoredResponses, turns: list[Turn], signer: ReasoningSigner):
    """The call's body reader: the chat request that the Responses request means (with the stored
    conversation of its previous_response_id)."""

    def translate(body: dict):
        previous = None
        pid = body.get("previous_response_id")
        if pid is not None:
            found = stored.get(key.workspace_id, pid) if isinstance(pid, str) and len(pid) <= 64 else None
            if found is None:
                fail("previous_response_id", f"no stored response {pid!r} in this workspace (never stored, "
                                             "deleted, or past its retention)")
            previous = found.conversation
        return to_chat_body(body, previous, signer)

    return translated_reader(request, translate, turns)


class Reply:
    """One response: its output items as they are built, then stored and sent."""

    def __init__(self, call: Call, turn: Turn, stored: StoredResponses, signer: ReasoningSigner):
        self.call, self.turn, self.stored = call, turn, stored
        self.hex_id = call.request_id.replace("-", "")
        self.id = f"resp_{self.hex_id}"
        self.created = int(time.time())
        self.output = OutputBuilder(self.hex_id, call.thinking, namespaced=turn.namespaced,
                                    seal=signer.seal if turn.seal_reasoning else None)

    def response(self, status: str, **kw) -> dict:
        return response_object(self.id, self.call.model, self.turn, self.created, status=status,
                               output=self.output.items, **kw)

    async def finished(self) -> dict:
        finish = self.output.finish
        body = self.response("incomplete" if finish.reason == "length" else "completed", usage=finish.usage)
        if self.turn.store:
            conversation = self.turn.history + [self.output.assistant_message()]
            items = with_ids(self.turn.items, self.hex_id)
            try:
                await asyncio.to_thread(self.stored.save, self.call.key.workspace_id, body, conversation, items)
            except Exception:
                log.exception("response %s could not be stored", self.id)
                raise InternalError("The response was generated but could not be stored; send it again") from None
        return body

    async def collect(self) -> dict:
        await each_delta(self.call, self.output.feed)
        return await self.finished()

    async def stream(self) -> AsyncIterator[bytes]:
        """response.created, response.in_progress, each item's events, then response.completed (or
        .incomplete); an error after the start is an `error` event and response.failed."""
        numbers = count()

        def sse(event: dict) -> bytes:
            event["sequence_number"] = next(numbers)
            return (f"event: {event['type']}\ndata: ".encode()
                    + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n")

        yield sse({"type": "response.created", "response": self.response("in_progress")})
        yield sse({"type": "response.in_progress", "response": self.response("in_progress")})
        try:
            async for chunk in events(self.call, lambda d: map(sse, self.output.feed(d))):
                yield chunk
            body = await self.finished()
            yield sse({"type": f"response.{body['status']}", "response": body})
        except ModelStudioError as exc:
            exc = self.turn.refusal(exc)
            yield sse({"type": "error", "code": exc.code, "message": exc.message, "param": exc.param})
            yield sse({"type": "response.failed",
                       "response": self.response("failed", error={"code": exc.code, "message": exc.message})})


async def create_response(request: Request, key: ApiKey = Depends(require_key)):
    state, rid = request.app.state, request_id(request)
    call = state.service.call(key, rid, protocol="responses")
    turns: list[Turn] = []
    replies: list[Reply] = []

    def reply() -> Reply:  # once the request is read
        if not replies:
            replies.append(Reply(call, turns[0], state.stored_responses, state.signer))
        return replies[0]

    return await serve_call(request, call, read_turn(request, key, state.stored_responses, turns, state.signer), Answer(
        "responses", lambda exc: error_response(request, exc), stream=lambda: reply().stream(),
        collect=lambda: reply().collect(), ignored=lambda: turns[0].ignored,
        rename=lambda exc: turns[0].refusal(exc) if turns else exc))


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"No stored response {response_id!r} in this workspace", param="response_id")


async def get_response(request: Request, response_id: str, key: ApiKey = Depends(require_key)):
    found = await run_in_threadpool(request.app.state.stored_responses.get, key.workspace_id, response_id)
    if found is None:
        raise _not_found(response_id)
    return found.response


async def list_input_items(request: Request, response_id: str, after: str | None = None, limit: int = 20,
                           order: str = "desc", key: ApiKey = Depends(require_key)):
    """The request's own input items, paged like OpenAI's (`after`, `limit` 1-100, `order`)."""
    if not 1 <= limit <= 100:
        raise InvalidParameter("limit must be between 1 and 100", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidParameter("order must be 'asc' or 'desc'", param="order")
    found = await run_in_threadpool(request.app.state.stored_responses.get, key.workspace_id, response_id)
    if found is None:
        raise _not_found(response_id)
    items = found.input_items if order == "asc" else found.input_items[::-1]
    if after is not None:
        ids = [i["id"] for i in items]
        if after not in ids:
            raise InvalidParameter(f"after: no input item {after!r} in this response", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}


async def delete_response(request: Request, response_id: str, key: ApiKey = Depends(require_key)):
    if not await run_in_threadpool(request.app.state.stored_responses.delete, key.workspace_id, response_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


for prefix in PREFIXES:
    router.add_api_route(f"{prefix}/responses", create_response, methods=["POST"])
    router.add_api_route(f"{prefix}/responses/{{response_id}}", get_response, methods=["GET"])
    router.add_api_route(f"{prefix}/responses/{{response_id}}", delete_response, methods=["DELETE"])
    router.add_api_route(f"{prefix}/responses/{{response_id}}/input_items", list_input_items, methods=["GET"])
