"""The chat service: what every call shares (the store, the engines, media, accounting, the calls
in flight), and the steps of a call that need it: authorizing a model for a workspace (404, 403)
and starting a generation (what the deployment can take, the history, media, the engine).

The life of one call, from its key to its ledger record, is `call.Call`.
"""

from __future__ import annotations

import asyncio
import logging

from ..accounts.remembered import RememberedAccess
from ..accounts.store import ApiKey
from ..catalog import ModelCard, card as find_card
from ..config import Config
from ..engines import engines_by_model
from ..engines.protocol import Conversation, Engine, Generation
from ..errors import InvalidParameter, ModelAccessDenied, ModelNotFound
from .request import ChatRequest
from ..workers import offload
from .accounting import Accounting
from .call import Call
from .in_flight import InFlight
from .media import MediaLoader
from . import rules
from .rules import Decision

log = logging.getLogger("moonserve.service")

MEDIA_PARTS = {"image_url": "image", "video_url": "video", "video": "video"}


class Service:
    def __init__(self, config: Config, accounts: RememberedAccess, engines: dict[str, Engine], media: MediaLoader,
                 accounting: Accounting):
        self.config = config
        self.accounts = accounts
        self.engines = engines
        self.model_engines = engines_by_model(config.routes, engines)
        self.media = media
        self.accounting = accounting
        self.calls = InFlight()

    def call(self, key: ApiKey, request_id: str, protocol: str = "chat") -> Call:
        return Call(self, key, request_id, protocol)

    def engine_for(self, model_id: str) -> Engine:
        return self.model_engines[model_id]

    def authorize_model(self, key: ApiKey, model_id: str) -> ModelCard:
        card = find_card(model_id)
        if card is None:
            raise ModelNotFound(model_id)
        if not self.accounts.is_activated(key.workspace_id, model_id):
            raise ModelAccessDenied(
                f"Model access denied: workspace `{key.workspace_id}` has not activated `{model_id}`. "
                f"Activate it first (moonserve models activate {model_id} --workspace {key.workspace_id})."
            )
        return card

    async def generate(self, req: ChatRequest, card: ModelCard, decision: Decision,
                       request_bytes: int = 0) -> Generation:
        engine = self.engine_for(card.id)
        self._check_capabilities(req, engine)
        if decision.options.tool_choice not in ("auto", "none") and not req.tools:
            raise InvalidParameter("tool_choice names a tool but no tools were given", param="tool_choice")
        messages = await offload(history, req, decision.preserve_thinking)
        conversation = Conversation(messages=messages, tools=req.tools)
        if engine.accepts_media:
            conversation.media = await self.media.load(req, request_bytes)
        return engine.chat(conversation, decision.options)

    async def count_tokens(self, key: ApiKey, req: ChatRequest) -> int:
        """The prompt tokens a call with this request would use, under the same checks (no ledger
        record: nothing is generated)."""
        card = await asyncio.to_thread(self.authorize_model, key, req.model)
        decision = await offload(rules.decide, req, card)
        engine = self.engine_for(card.id)
        self._check_capabilities(req, engine)
        messages = await offload(history, req, decision.preserve_thinking)
        return await offload(engine.count_tokens, Conversation(messages=messages, tools=req.tools), decision.options)

    def _check_capabilities(self, req: ChatRequest, engine: Engine) -> None:
        accepts_media = engine.accepts_media
        for i, m in enumerate(req.messages):
            if isinstance(m.content, list):
                for j, part in enumerate(m.content):
                    kind = MEDIA_PARTS.get(part.type)
                    if kind and not accepts_media:
                        raise InvalidParameter(
                            f"messages[{i}].content[{j}]: the deployment serving {req.model} "
                            f"({engine.name}) has no vision projector and cannot take {kind} input",
                            param=f"messages[{i}].content[{j}]",
                        )
        if req.tools and not engine.supports_tools:
            raise InvalidParameter(
                f"tools: the deployment serving {req.model} ({engine.name}) has no tool-call parser configured",
                param="tools",
            )


def history(req: ChatRequest, preserve_thinking: bool) -> list[dict]:
    """The messages as the engine gets them. Reasoning of turns before the last user message is
    dropped unless preserve_thinking; the current tool-call loop's reasoning is always kept."""
    messages = [m.model_dump(exclude_none=True) for m in req.messages]
    if not preserve_thinking:
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for m in messages[:last_user]:
            m.pop("reasoning_content", None)
    return messages
