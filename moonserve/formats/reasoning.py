"""`<think>…</think>` reasoning, parsed incrementally out of generated text.

The model may open the block itself (`<think>` first, after optional whitespace), or the chat
template may have pre-filled `<think>`, so generation starts inside the reasoning. Whitespace
around the reasoning and between `</think>` and the answer is trimmed. Markers, whole or partial,
never reach either output.
"""

from __future__ import annotations

from .markers import split

OPEN, CLOSE = "<think>", "</think>"


class ReasoningParser:
    def __init__(self, starts_inside: bool):
        # start -> (reasoning_start -> reasoning -> after) | content
        self.state = "reasoning_start" if starts_inside else "start"
        self._held = ""

    @property
    def in_reasoning(self) -> bool:
        return self.state in ("reasoning_start", "reasoning")

    @property
    def undecided(self) -> bool:
        """Nothing but whitespace or the start of `<think>` has come yet."""
        return self.state == "start"

    def feed(self, text: str) -> list[tuple[str, str]]:
        """[(kind, text)] with kind "reasoning" or "content"."""
        out: list[tuple[str, str]] = []
        buf = self._held + text
        self._held = ""
        while buf:
            if self.state == "start":
                stripped = buf.lstrip()
                if stripped.startswith(OPEN):
                    self.state, buf = "reasoning_start", stripped[len(OPEN):]
                elif not stripped or OPEN.startswith(stripped):
                    self._held = buf  # undecided: whitespace, or the start of "<think>"
                    return out
                else:
                    self.state = "content"
            elif self.state == "reasoning_start":
                buf = buf.lstrip()
                if buf:
                    self.state = "reasoning"
            elif self.state == "reasoning":
                safe, marker, rest = split(buf, [CLOSE])
                if marker is None:
                    # hold back a partial "</think>" and trailing whitespace (trimmed if it closes)
                    body = safe.rstrip()
                    self._held = safe[len(body):] + rest
                    if body:
                        out.append(("reasoning", body))
                    return out
                if safe.rstrip():
                    out.append(("reasoning", safe.rstrip()))
                self.state, buf = "after", rest
            elif self.state == "after":
                buf = buf.lstrip()
                if buf:
                    self.state = "content"
            else:  # content
                out.append(("content", buf))
                buf = ""
        return out

    def flush(self) -> list[tuple[str, str]]:
        held, self._held = self._held, ""
        if self.state == "start" and held.strip():
            return [("content", held)]
        if self.state == "reasoning" and held.strip():  # unterminated reasoning: keep what it said
            return [("reasoning", held.rstrip())]
        return []

