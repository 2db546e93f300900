"""Generated text -> deltas: the reasoning first, then the answer with its tool calls."""

from __future__ import annotations

from .deltas import ReasoningDelta, TextDelta
from .reasoning import ReasoningParser
from .tool_calls import TOOL_PARSERS


class OutputPipeline:
    def __init__(self, *, reasoning: bool, starts_in_reasoning: bool = False, tool_format: str | None = None,
                 first_tool_index: int = 0):
        self.reasoning = ReasoningParser(starts_in_reasoning) if reasoning else None
        self.tools = TOOL_PARSERS[tool_format](first_tool_index) if tool_format else None

    @property
    def in_reasoning(self) -> bool:
        return self.reasoning is not None and self.reasoning.in_reasoning

    @property
    def undecided(self) -> bool:
        return self.reasoning is not None and self.reasoning.undecided

    @property
    def tool_calls_done(self) -> int:
        return self.tools.calls if self.tools else 0

    @property
    def in_tool_call(self) -> bool:
        return bool(self.tools and self.tools.open_call)

    def feed(self, text: str) -> list:
        if self.reasoning is None:
            return self._answer(text)
        return self._route(self.reasoning.feed(text))

    def flush(self) -> list:
        out = self._route(self.reasoning.flush()) if self.reasoning else []
        if self.tools:
            out.extend(self.tools.flush())
        return out

    def _route(self, parts: list[tuple[str, str]]) -> list:
        out: list = []
        for kind, text in parts:
            if kind == "reasoning":
                out.append(ReasoningDelta(text))
            else:
                out.extend(self._answer(text))
        return out

    def _answer(self, text: str) -> list:
        return self.tools.feed(text) if self.tools else [TextDelta(text)] if text else []
