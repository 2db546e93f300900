"""Tool calls, parsed incrementally out of the answer text, in two formats.

Kimi K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>
{json}<|tool_call_end|>…<|tool_calls_section_end|>` (also spelled `<|tool_call_section_begin|>`).
The call's id is the model's own `functions.NAME:IDX`; arguments stream as the model writes them.

Hermes / Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. The JSON is complete only at
the closing tag, so the call's first piece (id, name) and its arguments come out together there; its
id is `functions.NAME:IDX`, numbered after the calls already in the conversation.

A parser returns `TextDelta`s for the answer and `ToolCallDelta`s for calls; markers never leak.
"""

from __future__ import annotations

import json

from .deltas import TextDelta, ToolCallDelta
from .markers import split

KIMI_SECTION_BEGIN = ("<|tool_calls_section_begin|>", "<|tool_call_section_begin|>")
KIMI_SECTION_END = ("<|tool_calls_section_end|>", "<|tool_call_section_end|>")
KIMI_CALL_BEGIN = "<|tool_call_begin|>"
KIMI_ARGS_BEGIN = "<|tool_call_argument_begin|>"
KIMI_CALL_END = "<|tool_call_end|>"


def name_from_id(call_id: str) -> str:
    """`functions.get_weather:0` -> `get_weather` (and a bare `get_weather:0` too)."""
    name = call_id.split(".", 1)[1] if call_id.startswith("functions.") else call_id
    return name.rsplit(":", 1)[0] if ":" in name else name


class KimiToolParser:
    def __init__(self, first_index: int = 0):  # Kimi numbers its own calls in their ids
        self.state = "text"
        self._held = ""
        self.calls = 0  # calls completed in this reply
        self.open_call = False

    def feed(self, text: str) -> list:
        out: list = []
        buf = self._held + text
        self._held = ""
        while buf:
            if self.state == "text":
                safe, marker, rest = split(buf, KIMI_SECTION_BEGIN + (KIMI_CALL_BEGIN,))
                if safe:
                    out.append(TextDelta(safe))
                if marker is None:
                    self._held = rest
                    return out
                self.state = "call_id" if marker == KIMI_CALL_BEGIN else "section"
                buf = rest
            elif self.state == "section":
                _, marker, rest = split(buf, (KIMI_CALL_BEGIN,) + KIMI_SECTION_END)
                if marker is None:
                    self._held = rest  # text between calls is not part of the answer
                    return out
                self.state = "call_id" if marker == KIMI_CALL_BEGIN else "text"
                buf = rest
            elif self.state == "call_id":
                head, marker, rest = split(buf, (KIMI_ARGS_BEGIN,))
                if marker is None:
                    self._held = buf
                    return out
                call_id = head.strip()
                out.append(ToolCallDelta(self.calls, "", id=call_id, name=name_from_id(call_id)))
                self.open_call = True
                self.state, buf = "args", rest
            else:  # args
                safe, marker, rest = split(buf, (KIMI_CALL_END,) + KIMI_SECTION_END)
                if safe:
                    out.append(ToolCallDelta(self.calls, safe))
                if marker is None:
                    self._held = rest
                    return out
                self.calls += 1
                self.open_call = False
                self.state = "section" if marker == KIMI_CALL_END else "text"
                buf = rest
        return out

    def flush(self) -> list:
        held, self._held = self._held, ""
        if self.state == "text" and held:
            return [TextDelta(held)]
        if self.state == "args" and held:
            return [ToolCallDelta(self.calls, held)]
        return []


class HermesToolParser:
    OPEN, CLOSE = "<tool_call>", "</tool_call>"

    def __init__(self, first_index: int = 0):
        self.first_index = first_index
        self.state = "text"
        self._held = ""
        self.calls = 0
        self.open_call = False

    def feed(self, text: str) -> list:
        out: list = []
        buf = self._held + text
        self._held = ""
        while buf:
            if self.state == "text":
                if self.calls:
                    buf = buf.lstrip()  # whitespace between and after calls is not part of the answer
                safe, marker, rest = split(buf, (self.OPEN,))
                if safe:
                    out.append(TextDelta(safe))
                if marker is None:
                    self._held = rest
                    return out
                self.state, self.open_call, buf = "call", True, rest
            else:
                body, marker, rest = split(buf, (self.CLOSE,))
                if marker is None:
                    self._held = buf
                    return out
                out.extend(self._call(body))
                self.state, self.open_call, buf = "text", False, rest
        return out

    def _call(self, body: str) -> list:
        try:
            call = json.loads(body)
            name = call["name"]
            args = call.get("arguments", call.get("parameters", {}))
            if not isinstance(name, str):
                raise TypeError("name")
        except (ValueError, KeyError, TypeError):
            return [TextDelta(f"{self.OPEN}{body}{self.CLOSE}")]  # not a call after all: keep the text
        arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        index = self.calls
        self.calls += 1
        call_id = f"functions.{name}:{self.first_index + index}"
        return [ToolCallDelta(index, "", id=call_id, name=name), ToolCallDelta(index, arguments)]

    def flush(self) -> list:
        held, self._held = self._held, ""
        if self.state == "text" and held.strip():
            return [TextDelta(held)]
        if self.state == "call" and held:  # cut off inside a call: show what came, as text
            return [TextDelta(self.OPEN + held)]
        return []


TOOL_PARSERS = {"kimi_k2": KimiToolParser, "hermes": HermesToolParser}
