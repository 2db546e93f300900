"""The call's deltas as Responses output items, with the stream events that build them.

One builder serves both replies: a stream sends its events as they come, a plain reply keeps only
the items. Items come in the order the model wrote them: a `reasoning` item (its text as the
summary), a `message` with one `output_text` part, `function_call` items.
"""

from __future__ import annotations

import time
from typing import Callable

from ...engines.protocol import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from .request import Turn

ECHOED = ("instructions", "max_output_tokens", "previous_response_id", "temperature", "top_p", "user")


def usage_body(u: Usage) -> dict:
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens}


def response_object(response_id: str, model: str, turn: Turn, created: float, *, status: str,
                    output: list[dict], usage: Usage | None = None, error: dict | None = None) -> dict:
    body = turn.body
    text = body.get("text") or {}
    reasoning = body.get("reasoning") or {}
    return {
        "id": response_id, "object": "response", "created_at": created, "model": model, "status": status,
        **{k: body.get(k) for k in ECHOED},
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "text": {"format": text.get("format") or {"type": "text"}},
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": turn.store, "truncation": "disabled", "metadata": body.get("metadata") or {},
        "background": False, "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "completed_at": time.time() if status in ("completed", "incomplete") else None,
        "usage": usage_body(usage) if usage is not None else None,
    }


class OutputBuilder:
    """Feed it deltas; it returns the events each one makes, and keeps the items. A function call
    the model made under a namespaced function's flat name comes out as `name` and `namespace`; with
    `seal`, a reasoning item carries its reasoning sealed in `encrypted_content`."""

    def __init__(self, item_prefix: str, thinking: bool, *, namespaced: dict[str, tuple[str, str]] | None = None,
                 seal: Callable[[str], str] | None = None):
        self.items: list[dict] = []
        self.thinking = thinking
        self._prefix = item_prefix
        self._namespaced = namespaced or {}
        self._seal = seal
        self._flat_names: dict[str, str] = {}  # call_id -> the name the model used
        self._open: dict | None = None  # the item being written
        self._texts: list[str] = []  # its text so far
        self.finish: Finish | None = None

    def feed(self, d) -> list[dict]:
        t = type(d)
        if t is Finish:
            self.finish = d
            return self._close()
        if t is ReasoningDelta:
            events = self._ensure("reasoning")
            self._texts.append(d.text)
            return events + [self._at({"type": "response.reasoning_summary_text.delta", "summary_index": 0,
                                       "delta": d.text})]
        if t is TextDelta:
            if not d.text:
                return []
            events = self._ensure("message")
            self._texts.append(d.text)
            return events + [self._at({"type": "response.output_text.delta", "content_index": 0, "delta": d.text,
                                       "logprobs": []})]
        if t is ToolCallDelta:
            events = []
            if d.id is not None:  # a new call
                item = {"type": "function_call", "call_id": d.id, "name": d.name, "arguments": ""}
                if d.name in self._namespaced:
                    self._flat_names[d.id] = d.name
                    item["namespace"], item["name"] = self._namespaced[d.name]
                events = self._close() + self._start(item)
            if d.arguments:
                self._texts.append(d.arguments)
                events.append(self._at({"type": "response.function_call_arguments.delta", "delta": d.arguments}))
            return events
        return []

    def reasoning(self) -> str | None:
        """The reasoning text, for the stored conversation (None when not thinking)."""
        if not self.thinking:
            return None
        return "".join(p["text"] for item in self.items if item["type"] == "reasoning" for p in item["summary"])

    def assistant_message(self) -> dict:
        """The reply as the chat message that a later turn (previous_response_id) sends back."""
        message: dict = {"role": "assistant", "content": "".join(
            p["text"] for item in self.items if item["type"] == "message" for p in item["content"])}
        reasoning = self.reasoning()
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        calls = [{"id": item["call_id"], "type": "function",
                  "function": {"name": self._flat_names.get(item["call_id"], item["name"]),
                               "arguments": item["arguments"]}}
                 for item in self.items if item["type"] == "function_call"]
        if calls:
            message["tool_calls"] = calls
        return message

    # -- items ------------------------------------------------------------------------------------

    def _ensure(self, kind: str) -> list[dict]:
        if self._open is not None and self._open["type"] == kind:
            return []
        events = self._close()
        if kind == "reasoning":
            events += self._start({"type": "reasoning", "summary": []})
            events.append(self._at({"type": "response.reasoning_summary_part.added", "summary_index": 0,
                                    "part": {"type": "summary_text", "text": ""}}))
        else:
            events += self._start({"type": "message", "role": "assistant", "content": []})
            events.append(self._at({"type": "response.content_part.added", "content_index": 0,
                                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}))
        return events

    def _start(self, item: dict) -> list[dict]:
        prefix = {"reasoning": "rs", "message": "msg", "function_call": "fc"}[item["type"]]
        self._open = {"id": f"{prefix}_{self._prefix}{len(self.items)}", **item, "status": "in_progress"}
        if item["type"] == "reasoning":
            del self._open["status"]  # reasoning items carry no status in OpenAI's replies
        self._texts = []
        return [{"type": "response.output_item.added", "output_index": len(self.items), "item": dict(self._open)}]

    def _close(self) -> list[dict]:
        item = self._open
        if item is None:
            return []
        self._open = None
        text = "".join(self._texts)
        if item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            if self._seal is not None:
                item["encrypted_content"] = self._seal(text)
            events = [self._at({"type": "response.reasoning_summary_text.done", "summary_index": 0, "text": text}, item),
                      self._at({"type": "response.reasoning_summary_part.done", "summary_index": 0, "part": part}, item)]
        elif item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item["content"], item["status"] = [part], "completed"
            events = [self._at({"type": "response.output_text.done", "content_index": 0, "text": text, "logprobs": []},
                               item),
                      self._at({"type": "response.content_part.done", "content_index": 0, "part": part}, item)]
        else:
            item["arguments"], item["status"] = text, "completed"
            events = [self._at({"type": "response.function_call_arguments.done", "arguments": text}, item)]
        events.append({"type": "response.output_item.done", "output_index": len(self.items), "item": item})
        self.items.append(item)
        return events

    def _at(self, event: dict, item: dict | None = None) -> dict:
        item = item or self._open
        return {**event, "item_id": item["id"], "output_index": len(self.items)}
