"""The state of one request inside the embedded engine, and the events it sends back."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

from .llama import Sampler

_ids = itertools.count(1)


@dataclass(slots=True)
class Token:
    """One sampled token of a sequence."""

    id: int


@dataclass(slots=True)
class Done:
    reason: str  # "stop" (end of generation), "length", "cancelled"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass(slots=True)
class Failed:
    error: Exception


@dataclass(eq=False)
class Sequence:
    prompt: list[int]
    max_new_tokens: int
    sampler: Sampler
    emit: Callable[[object], None]  # thread-safe: hands an event to the request's consumer
    id: int = field(default_factory=lambda: next(_ids))
    slot: int | None = None  # the KV sequence id it holds while running
    n_computed: int = 0  # prompt tokens already in the KV cache
    generated: list[int] = field(default_factory=list)
    n_cached: int = 0  # prompt tokens restored from the prefix cache instead of computed
    last_token: int | None = None  # sampled, not yet decoded
    finished: bool = False

    @property
    def n_generated(self) -> int:
        return len(self.generated)

    @property
    def computed_tokens(self) -> list[int]:
        """The tokens whose KV cells this sequence holds (the last sampled one is not decoded yet)."""
        return (self.prompt + self.generated)[: self.n_computed]

    @property
    def prefilling(self) -> bool:
        return self.n_computed < len(self.prompt)

    @property
    def position(self) -> int:
        """Position of the next token to decode."""
        return self.n_computed
