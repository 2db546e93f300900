"""One chat call, from an authenticated request to a stream of engine deltas.

Checks the model (404), the workspace's activation (403), the card's rules (400), what the
deployment can take, then starts the engine and waits for its first delta so that an error before
any output becomes a proper HTTP error rather than a broken stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import AsyncIterator

from ..accounts.store import ApiKey, Store
from ..catalog import ModelCard, card as find_card
from ..chat.template import TemplateRenderError
from ..config import Config
from ..engines.protocol import (Conversation, Delta, Engine, EngineOverloaded, PromptTooLong,
                                UnsupportedResponseFormat, Usage)
from ..errors import InvalidParameter, ModelAccessDenied, ModelNotFound, ModelStudioError, ModelUnavailable
from ..wire import ChatRequest
from . import rules
from .media import MediaLoader

log = logging.getLogger("moonserve.service")

MEDIA_PARTS = {"image_url": "image", "video_url": "video", "video": "video"}


@dataclass
class ChatRun:
    model: str
    deltas: AsyncIterator[Delta]
    meter: Usage  # the usage so far, kept by the engine
    include_usage: bool = False
    ignored: list[str] = field(default_factory=list)


class ChatService:
    def __init__(self, config: Config, store: Store, engines: dict[str, Engine], media: MediaLoader):
        self.config = config
        self.store = store
        self.engines = engines
        self.media = media

    def engine_for(self, model_id: str) -> Engine:
        return self.engines[self.config.routes[model_id]]

    def authorize_model(self, key: ApiKey, model_id: str) -> ModelCard:
        card = find_card(model_id)
        if card is None:
            raise ModelNotFound(model_id)
        if not self.store.is_activated(key.workspace_id, model_id):
            raise ModelAccessDenied(
                f"Model access denied: workspace `{key.workspace_id}` has not activated `{model_id}`. "
                f"Activate it first (moonserve models activate {model_id} --workspace {key.workspace_id})."
            )
        return card

    async def start(self, key: ApiKey, req: ChatRequest, card: ModelCard, request_bytes: int = 0) -> ChatRun:
        decision = rules.decide(req, card)
        engine = self.engine_for(card.id)
        self._check_capabilities(req, engine)
        if decision.options.tool_choice not in ("auto", "none") and not req.tools:
            raise InvalidParameter("tool_choice names a tool but no tools were given", param="tool_choice")
        conversation = Conversation(
            messages=history(req, decision.preserve_thinking),
            tools=req.tools,
        )
        if getattr(engine, "accepts_media", False):
            conversation.media = await self.media.load(req, request_bytes)
        decision.options.meter = Usage()
        stream = engine.chat(conversation, decision.options)
        try:
            first = await anext(stream)
        except ModelStudioError:
            raise
        except PromptTooLong as exc:
            raise InvalidParameter(
                f"Range of input length should be [1, {exc.limit}]; the prompt is {exc.n_tokens} tokens",
                param="messages",
            ) from None
        except EngineOverloaded:
            raise ModelUnavailable(
                f"The deployment behind {card.id} is overloaded; retry later", headers={"Retry-After": "1"}
            ) from None
        except TemplateRenderError as exc:  # the model's template refused this conversation
            raise InvalidParameter(f"messages: {exc}", param="messages") from None
        except UnsupportedResponseFormat as exc:
            raise InvalidParameter(f"response_format.json_schema.schema: {exc}",
                                   param="response_format.json_schema.schema") from None
        return ChatRun(card.id, _prepend(first, stream), decision.options.meter, decision.include_usage,
                       decision.ignored)

    def _check_capabilities(self, req: ChatRequest, engine: Engine) -> None:
        accepts_media = getattr(engine, "accepts_media", False)
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
        if req.tools and not getattr(engine, "supports_tools", False):
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


async def _prepend(first: Delta, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    try:
        yield first
        async for d in rest:
            yield d
    finally:
        await rest.aclose()
