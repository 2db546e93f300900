"""An Anthropic Messages request as the chat request it means.

What Claude Code sends is the measure: `system` as text blocks, and `system` entries inside
`messages` too (its environment and skills text, after the first user message), kept where they
stand; `thinking` enabled, adaptive or disabled (`display: "omitted"` shows none of the reasoning's
text: the signature carries it); thinking blocks sent back are opened from their signature (sealed by
this server, see service/signatures.py), so a forged or edited block is refused; tools with whatever
schemas the client has (a grammar's bounds apply only where one is built); fields that have no effect
here (`metadata`, `output_config`, `context_management`, ...) are named, not refused.

`Turn` remembers where each chat message came from, so that an error found by the chat rules names
the field as this request did (`messages[3].content[1]`, `tools[19].input_schema...`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ...errors import ContextLengthExceeded, InvalidParameter, ModelStudioError
from ...service.signatures import ReasoningSigner

# The Messages fields this translation reads; any other (metadata, service_tier, output_config,
# context_management, container, ...) has no effect here and is named in X-Moonserve-Ignored-Params.
READ = {"model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k", "stop_sequences",
        "tools", "tool_choice", "thinking"}
THINKING_TYPES = ("enabled", "disabled", "adaptive")
# The chat names that an error may hold, renamed in one pass (a renamed name is never renamed again).
CHAT_NAMES = re.compile(r"in assistant tool call message at index (\d+)|\bmessages\[(\d+)\]"
                        r"|\btools\[(\d+)\](\.function\.parameters|\.function\.)?|\bmax_completion_tokens\b"
                        r"|\bstop\b(?=$|[:\[])")


def fail(where: str, message: str):
    raise InvalidParameter(f"{where}: {message}", param=where)


@dataclass
class Turn:
    """What the request says beyond its chat request."""

    show_thinking: bool = True  # False with thinking.display = "omitted"
    sources: list[str] = field(default_factory=list)  # per chat message: the field it came from
    tools: list[int] = field(default_factory=list)  # per chat tool: its index in the request's tools
    ignored: list[str] = field(default_factory=list)

    def rename(self, exc: ModelStudioError) -> ModelStudioError:
        """A refusal in this request's terms."""
        if isinstance(exc, ContextLengthExceeded):  # Anthropic's wording, which its clients recognise
            exc.message = f"prompt is too long: {exc.tokens} tokens > {exc.limit} maximum"
            return exc
        exc.message = self._rename(exc.message)
        if exc.param:
            exc.param = self._rename(exc.param)
        return exc

    def _rename(self, text: str) -> str:
        def renamed(m: re.Match) -> str:
            if m.group(1) is not None:
                return (f"for the tool_use blocks of {self._source(int(m.group(1)))}: send back the thinking block "
                        "that came with them")
            if m.group(2) is not None:
                return self._source(int(m.group(2)))
            if m.group(3) is not None:
                where = f"tools[{self._tool(int(m.group(3)))}]"
                return where + (".input_schema" if m.group(4) == ".function.parameters" else
                                "." if m.group(4) == ".function." else "")
            return {"max_completion_tokens": "max_tokens", "stop": "stop_sequences"}[m.group(0)]

        return CHAT_NAMES.sub(renamed, text)

    def _source(self, k: int) -> str:
        return self.sources[k] if k < len(self.sources) else f"messages[{k}]"

    def _tool(self, k: int) -> int:
        return self.tools[k] if k < len(self.tools) else k


def blocks(content, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        fail(where, "must be a string or a list of content blocks")
    return content


def text_of(content, where: str) -> str:
    texts = [b.get("text", "") for b in blocks(content, where) if b.get("type") == "text"]
    if not all(isinstance(t, str) for t in texts):
        fail(where, "a text block's text must be a string")
    return "".join(texts)


def to_chat_body(body: dict, signer: ReasoningSigner, *, counting: bool = False) -> tuple[dict, Turn]:
    """The chat request, and the turn."""
    turn = Turn(ignored=sorted(set(body) - READ))
    if not isinstance(body.get("model"), str):
        fail("model", "is required")
    max_tokens = body.get("max_tokens")
    if not counting and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        fail("max_tokens", "is required: a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        fail("messages", "is required: a non-empty list")
    chat: dict = {"model": body["model"], "messages": []}
    if not counting:
        chat["max_completion_tokens"] = max_tokens  # Anthropic's max_tokens bounds thinking and text
        if body.get("stream"):
            chat.update(stream=True, stream_options={"include_usage": True})
    out = chat["messages"]

    def add(message: dict, where: str) -> None:
        out.append(message)
        turn.sources.append(where)

    if body.get("system"):
        add({"role": "system", "content": text_of(body["system"], "system")}, "system")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            fail(f"{where}.role", "must be 'user', 'assistant' or 'system'")
        content = blocks(m.get("content"), f"{where}.content")
        if m["role"] == "system":  # Claude Code's environment text, kept where it stands
            add({"role": "system", "content": text_of(content, f"{where}.content")}, where)
        elif m["role"] == "user":
            for message, source in user_messages(content, where):
                add(message, source)
        else:
            add(assistant_message(content, where, signer), where)
    for key in ("temperature", "top_p", "top_k", "stop_sequences"):
        if key in body:
            chat["stop" if key == "stop_sequences" else key] = body[key]
    if body.get("tools"):
        chat["tools"] = tools(body["tools"], turn)
    if "tool_choice" in body:
        chat.update(tool_choice(body["tool_choice"]))
    elif body.get("tools"):
        chat["parallel_tool_calls"] = True  # Anthropic's default
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in THINKING_TYPES:
            fail("thinking.type", "must be 'enabled', 'disabled' or 'adaptive'")
        if thinking.get("display") is not None and not isinstance(thinking["display"], str):
            fail("thinking.display", "must be a string ('omitted' shows none of the reasoning's text)")
        turn.show_thinking = thinking.get("display") != "omitted"  # any other display shows it all
        # budget_tokens cannot steer these models (Model Studio: thinking_budget cannot be used)
        chat["enable_thinking"] = thinking["type"] != "disabled"
    return chat, turn


def user_messages(content: list[dict], where: str) -> list[tuple[dict, str]]:
    """Tool results become tool messages (they come first in Anthropic's user turn); the rest one
    user message."""
    out, parts = [], []
    for j, b in enumerate(content):
        at, kind = f"{where}.content[{j}]", b.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": b.get("text", "")})
        elif kind == "image":
            source = b.get("source")
            if not isinstance(source, dict) or source.get("type") != "url":
                fail(f"{at}.source", "only images by URL are accepted (base64 images are not supported)")
            parts.append({"type": "image_url", "image_url": {"url": source.get("url")}})
        elif kind == "tool_result":
            result = b.get("content", "")
            text = result if isinstance(result, str) else text_of(result, f"{at}.content")
            out.append(({"role": "tool", "tool_call_id": b.get("tool_use_id"),
                         "content": f"Error: {text}" if b.get("is_error") else text}, at))
        else:
            fail(f"{at}.type", f"{kind!r} blocks are not supported in user messages")
    if parts:
        out.append(({"role": "user", "content": parts}, where))
    return out


def assistant_message(content: list[dict], where: str, signer: ReasoningSigner) -> dict:
    text, reasoning, calls = [], None, []
    for j, b in enumerate(content):
        at, kind = f"{where}.content[{j}]", b.get("type")
        if kind == "text":
            text.append(b.get("text", ""))
        elif kind == "thinking":
            shown = b.get("thinking")
            thought = signer.open(b.get("signature"), shown) if isinstance(shown, str) else None
            if thought is None:
                fail(f"{at}.signature", "the thinking block's signature does not match its text "
                     "(reasoning can only be sent back as Moonserve returned it)")
            reasoning = (reasoning or "") + thought
        elif kind == "redacted_thinking":
            continue  # never produced here; nothing the model could read
        elif kind == "tool_use":
            if not isinstance(b.get("name"), str) or not isinstance(b.get("id"), str):
                fail(at, "a tool_use block needs an id and a name")
            calls.append({"id": b["id"], "type": "function",
                          "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})}})
        else:
            fail(f"{at}.type", f"{kind!r} blocks are not supported in assistant messages")
    message: dict = {"role": "assistant", "content": "".join(text)}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return message


def tools(offered, turn: Turn) -> list[dict]:
    """Client tools as chat functions. Anthropic's server tools (web search, code execution, ...)
    cannot run here: they are left out of the model's tools and named as ignored."""
    if not isinstance(offered, list):
        fail("tools", "must be a list of tools")
    out = []
    for k, tool in enumerate(offered):
        if not isinstance(tool, dict):
            fail(f"tools[{k}]", "must be an object")
        if tool.get("type", "custom") != "custom":
            turn.ignored.append(f"tools[{k}]")
            continue
        turn.tools.append(k)
        out.append({"type": "function", "function": {
            "name": tool.get("name"), "description": tool.get("description", ""),
            "parameters": tool.get("input_schema") or {"type": "object"}}})
    return out


def tool_choice(choice) -> dict:
    kind = choice.get("type") if isinstance(choice, dict) else None
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(kind)
    if kind == "tool":
        mapped = {"type": "function", "function": {"name": choice.get("name")}}
    if mapped is None:
        fail("tool_choice.type", "must be 'auto', 'any', 'tool' or 'none'")
    return {"tool_choice": mapped, "parallel_tool_calls": not choice.get("disable_parallel_tool_use", False)}
