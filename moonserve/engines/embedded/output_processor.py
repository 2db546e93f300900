"""Output processing for the embedded engine: one request's token ids become deltas.

UTF-8 assembly (a character may span tokens), stop sequences, the reasoning and tool-call parsers,
the answer's own length bound (`max_tokens` when reasoning comes first), and the usage counts:
reasoning and answer tokens, each token counted once the parser knows which it was.
"""

from __future__ import annotations

from typing import Callable

from ...formats.output import OutputPipeline
from ...formats.text_stream import StopMatcher, Utf8Stream
from ..protocol import Delta


class OutputProcessor:
    def __init__(self, piece: Callable[[int], bytes], *, reasoning: bool, starts_in_reasoning: bool,
                 tool_format: str | None, first_tool_index: int, stop: list[str], answer_limit: int | None,
                 parallel_tool_calls: bool):
        self.piece = piece
        self.pipeline = OutputPipeline(reasoning=reasoning, starts_in_reasoning=starts_in_reasoning,
                                       tool_format=tool_format, first_tool_index=first_tool_index)
        self.utf8 = Utf8Stream()
        self.stops = StopMatcher(stop)
        self.answer_limit = answer_limit
        self.parallel_tool_calls = parallel_tool_calls
        self.counts = {"reasoning": 0, "answer": 0, "undecided": 0}
        self.completion_tokens = 0

    def start(self, forced: str) -> list[Delta]:
        """The text the prompt already opened the answer with (a forced tool call's beginning)."""
        return self.pipeline.feed(forced)

    def token(self, token: int) -> tuple[list[Delta], str | None]:
        """A generated token: the deltas it completes, and a finish reason if the reply ends here
        ("stop": a stop sequence, or the one tool call asked for is complete; "length": the answer
        reached max_tokens). When it ends, the deltas include everything held back."""
        pipeline, counts = self.pipeline, self.counts
        was_reasoning = pipeline.in_reasoning
        deltas = pipeline.feed(self.stops.feed(self.utf8.feed(self.piece(token))))
        if pipeline.undecided:  # whitespace or part of "<think>": counted once decided
            counts["undecided"] += 1
        else:
            kind = "reasoning" if was_reasoning or pipeline.in_reasoning else "answer"
            counts[kind] += 1 + counts["undecided"]
            counts["undecided"] = 0
        self.completion_tokens += 1
        reason = None
        if self.stops.stopped:
            reason = "stop"
        elif pipeline.tool_calls_done and not self.parallel_tool_calls and not pipeline.in_tool_call:
            reason = "stop"  # one call is the whole reply unless parallel calls were asked for
        elif self.answer_limit is not None and counts["answer"] >= self.answer_limit:
            reason = "length"
        if reason:
            deltas = deltas + pipeline.flush()
        return deltas, reason

    def end(self) -> list[Delta]:
        """The engine ended the sequence: everything held back."""
        return self.pipeline.feed(self.stops.feed(self.utf8.flush()) + self.stops.flush()) + self.pipeline.flush()

    def finish_reason(self, reason: str) -> str:
        return "tool_calls" if reason == "stop" and self.pipeline.tool_calls_done else reason

    @property
    def reasoning_tokens(self) -> int:
        return self.counts["reasoning"]
