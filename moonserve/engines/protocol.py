"""The one protocol every engine speaks: `chat(conversation, options)` -> async stream of deltas.

The service layer decides policy (the model card's rules) and hands an engine a `Conversation` and
`ChatOptions` that are already valid; the engine only generates. Deltas are plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, AsyncIterator, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image

from ..formats.deltas import Delta, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage  # noqa: F401 (the protocol's types)


@dataclass(slots=True)
class Admitted:
    """The first thing a generation yields: the engine has taken the request (its input processed,
    its prompt queued, an upstream's stream open). Everything the engine refuses before this is
    raised instead (a prompt too long, a full queue, an upstream's 400), so a call can still answer
    with an error status; after it, a stream opens while the prompt waits and is prefilled."""

    prompt_tokens: int = 0


@dataclass
class MediaItem:
    """An image or a video of the conversation, fetched and decoded (by service/media.py)."""

    message: int  # index of the message it belongs to
    part: int  # index of the part in that message's content
    kind: str  # "image" | "video"
    frames: list["Image"]  # one for an image


@dataclass
class Conversation:
    messages: list[dict]  # OpenAI-shaped messages, validated by the service layer
    tools: list[dict] | None = None
    media: list[MediaItem] = field(default_factory=list)  # given only to an engine that `accepts_media`


@dataclass
class ChatOptions:
    thinking: bool = False
    # What bounds the output means the same on every engine (an engine that cannot tell its
    # backend the answer's bound alone ends the answer itself):
    max_tokens: int | None = None  # bounds the answer (everything after the reasoning: text and tool calls)
    max_completion_tokens: int | None = None  # bounds reasoning + answer
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    # tools: "auto" (the model decides), "none" (tools are not offered), "required" (a call must
    # come), or the name of the one function that must be called
    tool_choice: str = "auto"
    parallel_tool_calls: bool = False
    response_format: dict | None = None  # {"type": "json_object"} or {"type": "json_schema", ...}


class Generation(Protocol):
    """One request's generation, as an engine runs it."""

    deltas: AsyncIterator[Admitted | Delta]
    """`Admitted`, then the output. The last delta is always a `Finish`, whose usage is the call's.
    Closing the iterator early cancels the generation and frees what it held."""

    def usage(self) -> Usage:
        """What was used so far: the usage of a call that ends before its `Finish` (a client that
        went away, a shutdown)."""
        ...


class Engine(Protocol):
    """Every engine declares what it can take; the service refuses the rest before calling it."""

    name: str
    accepts_media: bool  # images and videos (a vision projector, or an upstream that takes them)
    supports_tools: bool  # a tool-call parser for its model's output
    healthy: bool  # whether it answers now (failover tries healthy deployments first)
    context_length: int | None  # tokens of prompt plus answer per call; None: the upstream's own, unknown here

    async def start(self) -> None:
        """Load weights / connect; raise on failure. Called once before serving."""

    async def close(self) -> None: ...

    def chat(self, conversation: Conversation, options: ChatOptions) -> Generation:
        """Start generating (nothing runs until `deltas` is first awaited)."""
        ...

    def count_tokens(self, conversation: Conversation, options: ChatOptions) -> int:
        """The prompt's length in tokens (blocking: the service runs it in a worker thread)."""
        ...

    def stats(self) -> dict:
        """Numbers for /health and /metrics (no secrets)."""
        ...


class PromptTooLong(Exception):
    def __init__(self, n_tokens: int, limit: int, *, at_least: bool = False):
        """`at_least`: n_tokens is a lower bound (the prompt was too long to be worth tokenizing)."""
        self.tokens = f"at least {n_tokens}" if at_least else str(n_tokens)
        super().__init__(f"the prompt is {self.tokens} tokens; this deployment accepts at most {limit}")
        self.n_tokens = n_tokens
        self.limit = limit


class EngineOverloaded(Exception):
    """The engine's queue is full: the request was not admitted."""


class EngineUnavailable(Exception):
    """The engine cannot be reached or failed (an upstream down, a 5xx, a stream cut): a 503."""


class EngineThrottled(Exception):
    """The engine asked us to slow down (an upstream's 429)."""


class EngineRejected(Exception):
    """The engine refused the request as the client's mistake (an upstream's 400); the message is
    the engine's own."""


class UnsupportedResponseFormat(Exception):
    """The engine cannot enforce a schema the client sent (e.g. one its grammar converter cannot
    take, such as a remote $ref): the client's to change, a 400 naming `param`."""

    def __init__(self, message: str, param: str = "response_format.json_schema.schema"):
        super().__init__(message)
        self.param = param
