"""One accumulator of the call's deltas: what a reply built whole (a plain reply, or a stream event
that carries the output so far) is built from."""

from __future__ import annotations

from contextlib import aclosing
from typing import Callable

from ..engines.protocol import Delta, Finish, ReasoningDelta, TextDelta, ToolCallDelta
from ..service.call import Call


class Accumulated:
    """The answer so far: its text, its reasoning, its tool calls (in Chat Completions' shape), and
    the `Finish` once it came."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self.tool_calls: list[dict] = []
        self.finish: Finish | None = None

    def add(self, d) -> None:
        t = type(d)
        if t is TextDelta:
            self._text.append(d.text)
        elif t is ReasoningDelta:
            self._reasoning.append(d.text)
        elif t is ToolCallDelta:
            while len(self.tool_calls) <= d.index:
                self.tool_calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            call = self.tool_calls[d.index]
            if d.id is not None:
                call["id"] = d.id
            if d.name is not None:
                call["function"]["name"] = d.name
            call["function"]["arguments"] += d.arguments
        elif t is Finish:
            self.finish = d

    @property
    def text(self) -> str:
        if len(self._text) > 1:
            self._text[:] = ["".join(self._text)]
        return self._text[0] if self._text else ""

    @property
    def reasoning(self) -> str:
        if len(self._reasoning) > 1:
            self._reasoning[:] = ["".join(self._reasoning)]
        return self._reasoning[0] if self._reasoning else ""


async def each_delta(call: Call, add: Callable[[Delta], object]) -> None:
    """Every delta of the call, to `add`, for a plain reply (a protocol's own builder, or
    `Accumulated.add`); the last is its `Finish`."""
    async with aclosing(call.deltas()) as deltas:
        async for d in deltas:
            add(d)


async def accumulate(call: Call) -> Accumulated:
    """The whole answer of a call."""
    answer = Accumulated()
    await each_delta(call, answer.add)
    assert answer.finish is not None, "engine stream ended without Finish"
    return answer
