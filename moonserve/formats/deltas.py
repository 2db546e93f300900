"""What generation produces, piece by piece: the types every engine yields and every parser and
renderer reads. Plain dataclasses; `Finish` comes last and carries the call's usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str
    id: str | None = None  # set on a tool call's first piece, with name
    name: str | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    image_tokens: int = 0
    video_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Finish:
    reason: str  # "stop" | "length" | "tool_calls"
    usage: Usage


Delta = Union[TextDelta, ReasoningDelta, ToolCallDelta, Finish]
