"""A Responses request as the chat request it means.

`input` (a string or items), `instructions` and the stored conversation of `previous_response_id`
become chat messages; function tools (those grouped in a `namespace` too), `tool_choice`,
`text.format`, `max_output_tokens` and the thinking switch (`enable_thinking`, or `reasoning.effort`
"none") become the chat fields. Errors found later by the chat rules name chat fields; `Turn.rename`
names them as this request did.

What Codex sends is the measure: fields this server does not know (`client_metadata`, ...) and
hosted tools it cannot run (`web_search`, ...) are named in X-Moonserve-Ignored-Params, not refused;
reasoning items come back with the `encrypted_content` this server sealed (with `store: false` that
is the only way a stateless client keeps its reasoning), checked before the model reads it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ...errors import ContextLengthExceeded, InvalidParameter, ModelStudioError
from ...service.signatures import ReasoningSigner

# Fields of the Responses API that are read. Any other field is named as ignored.
ACCEPTED = {
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "previous_response_id",
    "store", "stream", "stream_options", "max_output_tokens", "temperature", "top_p", "text", "reasoning",
    "metadata", "user", "safety_identifier", "prompt_cache_key", "service_tier", "truncation", "include",
    "background", "top_logprobs", "max_tool_calls",
    # Model Studio's own switches, sent by the SDKs as extra_body
    "enable_thinking", "preserve_thinking", "seed",
}
# Accepted, and without effect here; the reply names them in X-Moonserve-Ignored-Params.
WITHOUT_EFFECT = ("safety_identifier", "prompt_cache_key", "service_tier")
ENCRYPTED_REASONING = "reasoning.encrypted_content"
INCLUDABLE = {ENCRYPTED_REASONING, "message.output_text.logprobs"}
# Tools that the Responses API runs on its own servers: never the model's here.
HOSTED_TOOLS = ("web_search", "web_search_preview", "file_search", "computer_use_preview", "computer",
                "code_interpreter", "image_generation", "mcp", "local_shell", "tool_search")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
MAX_METADATA = 16


def fail(where: str, message: str):
    raise InvalidParameter(f"{where}: {message}", param=where)


@dataclass
class Turn:
    """What a Responses request says beyond its chat request: the echo fields of the response, the
    conversation to store with it, and where each chat message came from (for error messages)."""

    body: dict
    history: list[dict] = field(default_factory=list)  # chat messages without the instructions
    items: list[dict] = field(default_factory=list)  # the request's input as items (GET .../input_items)
    sources: list[str] = field(default_factory=list)  # per chat message: the field it came from
    ignored: list[str] = field(default_factory=list)
    # a function grouped in a namespace: the name the model sees -> (namespace, name)
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    tool_sources: list[str] = field(default_factory=list)  # per chat tool: where the request offered it

    @property
    def store(self) -> bool:
        return self.body.get("store", True) is not False

    @property
    def seal_reasoning(self) -> bool:
        """Whether reasoning items carry `encrypted_content` (asked for with `include`)."""
        return ENCRYPTED_REASONING in (self.body.get("include") or ())

    def refusal(self, exc: ModelStudioError) -> ModelStudioError:
        """A refusal in this request's terms: its field names, and OpenAI's code for a context
        overflow, which Codex recognises."""
        if isinstance(exc, ContextLengthExceeded):
            exc.code, exc.param = "context_length_exceeded", "input"
            exc.message = (f"Your input exceeds the context window of this model: {exc.tokens} tokens, of at most "
                           f"{exc.limit}. Please adjust your input and try again.")
            return exc
        exc.message = self.rename(exc.message)
        if exc.param:
            exc.param = self.rename(exc.param)
        return exc

    def rename(self, text: str) -> str:
        """A chat field path in an error message, as the Responses request named it."""
        text = re.sub(r"messages\[(\d+)\]", lambda m: self._source(int(m.group(1))), text)
        text = re.sub(r"in assistant tool call message at index (\d+)", lambda m: (
            f"for the function_call at {self._source(int(m.group(1)))}: send back the reasoning item that "
            "came with it"), text)
        text = re.sub(r"\btools\[(\d+)\](?:\.function\.)?", self._tool, text)
        for chat, ours in (("response_format.json_schema.schema", "text.format.schema"),
                           ("response_format.json_schema", "text.format"), ("response_format", "text.format"),
                           ("max_completion_tokens", "max_output_tokens")):
            text = text.replace(chat, ours)
        return text

    def _tool(self, m: re.Match) -> str:
        k = int(m.group(1))
        where = self.tool_sources[k] if k < len(self.tool_sources) else f"tools[{k}]"
        return where + "." if m.group(0).endswith(".") else where

    def _source(self, k: int) -> str:
        return self.sources[k] if k < len(self.sources) else f"messages[{k}]"


def to_chat_body(body: dict, previous: list[dict] | None, signer: ReasoningSigner) -> tuple[dict, Turn]:
    """The chat request, and the turn. `previous`: the stored conversation of previous_response_id."""
    if not isinstance(body.get("model"), str):
        fail("model", "is required")
    turn = Turn(body)
    turn.ignored += sorted(set(body) - ACCEPTED)
    if body.get("background"):
        fail("background", "background responses are not supported; send the request and wait, or stream it")
    if body.get("top_logprobs"):
        fail("top_logprobs", "logprobs are not supported for these models")
    if body.get("max_tool_calls") is not None:
        fail("max_tool_calls", "is not supported; run the tool loop on the client and stop when you want")
    if body.get("truncation", "disabled") != "disabled":
        fail("truncation", "only 'disabled' is supported: a conversation past the context is refused, never cut")
    include = body.get("include") or []
    if not isinstance(include, list) or any(i not in INCLUDABLE for i in include):
        fail("include", f"the values that can be included are {sorted(INCLUDABLE)}")
    if any(i != ENCRYPTED_REASONING for i in include):
        turn.ignored.append("include")  # logprobs are not kept
    check_metadata(body.get("metadata"))
    turn.ignored += [k for k in WITHOUT_EFFECT if body.get(k) is not None]

    messages: list[dict] = []
    sources: list[str] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            fail("instructions", "must be a string")
        messages.append({"role": "system", "content": instructions})
        sources.append("instructions")
    if previous is not None:
        turn.history.extend(previous)
        sources += ["previous_response_id"] * len(previous)
    if body.get("tools") is not None:
        tools = function_tools(body["tools"], turn)
    new, new_sources = input_messages(body.get("input"), signer, turn.namespaced)
    turn.items = input_items(body.get("input"))
    turn.history.extend(new)
    sources += new_sources
    messages += turn.history
    turn.sources = sources
    if not turn.history:
        fail("input", "is required (a string or a list of items)")

    chat: dict = {"model": body["model"], "messages": messages, "stream": bool(body.get("stream"))}
    for key in ("temperature", "top_p", "parallel_tool_calls", "user", "seed", "enable_thinking", "preserve_thinking"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if "max_output_tokens" in body and body["max_output_tokens"] is not None:
        n = body["max_output_tokens"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            fail("max_output_tokens", "must be a positive integer")
        chat["max_completion_tokens"] = n  # like max_output_tokens, it bounds reasoning and text together
    thinking = reasoning_switch(body.get("reasoning"), turn)
    if thinking is not None:
        if chat.get("enable_thinking", thinking) != thinking:
            fail("reasoning.effort", "disagrees with enable_thinking; send one of them")
        chat["enable_thinking"] = thinking
    if body.get("tools") is not None:
        chat["tools"] = tools
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = tool_choice(body["tool_choice"], turn)
    fmt = text_format(body.get("text"), turn)
    if fmt is not None:
        chat["response_format"] = fmt
    return chat, turn


def check_metadata(metadata) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA:
        fail("metadata", f"must be an object of at most {MAX_METADATA} keys")
    for k, v in metadata.items():
        if len(k) > 64 or not isinstance(v, str) or len(v) > 512:
            fail(f"metadata.{k}", "keys are at most 64 characters, values strings of at most 512")


def reasoning_switch(reasoning, turn: Turn) -> bool | None:
    """`reasoning.effort` "none" turns thinking off, any other effort on; how much cannot be steered
    on these models (Model Studio: thinking_budget cannot be used), so the level itself is ignored."""
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict) or set(reasoning) - {"effort", "summary", "generate_summary"}:
        fail("reasoning", "must be an object with `effort` and `summary`")
    effort = reasoning.get("effort")
    if effort is not None and effort not in EFFORTS:
        fail("reasoning.effort", f"must be one of {list(EFFORTS)}")
    if reasoning.get("summary") is not None or reasoning.get("generate_summary") is not None:
        turn.ignored.append("reasoning.summary")  # the summary is always the whole reasoning
    if effort is None:
        return None
    if effort != "none":
        turn.ignored.append("reasoning.effort")
    return effort != "none"


def text_format(text, turn: Turn) -> dict | None:
    if text is None:
        return None
    if not isinstance(text, dict) or set(text) - {"format", "verbosity"}:
        fail("text", "must be an object with `format`")
    if text.get("verbosity") is not None:
        turn.ignored.append("text.verbosity")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        fail("text.format", "must be an object")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        fail("text.format.type", "must be 'text', 'json_object' or 'json_schema'")
    if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
        fail("text.format", "a json_schema format needs a `name` and a `schema` object")
    spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": spec}


def function_tools(tools, turn: Turn) -> list[dict]:
    """The function tools, as chat tools. A `namespace` (Codex's group of functions) is flattened
    into its functions, each under a name the model sees, `NAMESPACE__NAME` (the reply gives the call
    back as `name` and `namespace`); hosted and custom tools cannot run here and are named as ignored."""
    if not isinstance(tools, list):
        fail("tools", "must be a list")
    out: list[dict] = []

    def add(tool: dict, where: str, namespace: str | None = None) -> None:
        name = tool.get("name")
        if namespace is not None and isinstance(name, str):
            flat = namespace if namespace.endswith("_") else f"{namespace}__"
            flat += name
            turn.namespaced[flat] = (namespace, name)
            name = flat
        turn.tool_sources.append(where)
        out.append({"type": "function", "function": {
            "name": name, "description": tool.get("description") or "",
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}})

    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            fail(where, "must be an object")
        kind = tool.get("type")
        if kind == "function":
            add(tool, where)
        elif kind == "namespace":
            namespace, members = tool.get("name"), tool.get("tools")
            if not isinstance(namespace, str) or not namespace or not isinstance(members, list):
                fail(where, "a namespace needs a `name` and a list of `tools`")
            for j, member in enumerate(members):
                at = f"{where}.tools[{j}]"
                if not isinstance(member, dict):
                    fail(at, "must be an object")
                if member.get("type") == "function":
                    add(member, at, namespace)
                else:
                    turn.ignored.append(at)
        elif isinstance(kind, str) and (kind in HOSTED_TOOLS or kind == "custom" or kind.startswith("web_search")):
            turn.ignored.append(where)  # offered, but nothing here can run it
        else:
            fail(f"{where}.type", f"{kind!r} is not a tool type of the Responses API")
    return out


def tool_choice(choice, turn: Turn):
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        name = choice["name"]
        namespace = choice.get("namespace")
        if isinstance(namespace, str):
            name = next((flat for flat, (ns, n) in turn.namespaced.items() if (ns, n) == (namespace, name)), name)
        return {"type": "function", "function": {"name": name}}
    fail("tool_choice", "must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}")


# -- input items ----------------------------------------------------------------------------------

ITEM_PREFIXES = {"message": "msg", "reasoning": "rs", "function_call": "fc", "function_call_output": "fco"}


def input_items(items) -> list[dict]:
    """The input as the items OpenAI lists for a response (`message` content always as parts), without
    ids; `with_ids` gives them theirs. Called after `input_messages` has checked them."""
    if items is None:
        return []
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    out = []
    for item in items:
        item = {"type": "message", **item}
        if item["type"] == "message":
            kind = "output_text" if item["role"] == "assistant" else "input_text"
            if isinstance(item.get("content"), str):
                item["content"] = [{"type": kind, "text": item["content"]}]
            item.setdefault("status", "completed")
        out.append(item)
    return out


def with_ids(items: list[dict], hex_id: str) -> list[dict]:
    return [{**item, "id": item.get("id") or f"{ITEM_PREFIXES.get(item['type'], 'item')}_{hex_id}_in{i}"}
            for i, item in enumerate(items)]

def input_messages(items, signer: ReasoningSigner, namespaced: dict[str, tuple[str, str]] | None = None
                   ) -> tuple[list[dict], list[str]]:
    """`input` as chat messages, and for each the item it came from. Reasoning items give their text
    to the assistant message that follows; function calls join the assistant message before them."""
    flat_names = {v: k for k, v in (namespaced or {}).items()}
    if items is None:
        return [], []
    if isinstance(items, str):
        return [{"role": "user", "content": items}], ["input"]
    if not isinstance(items, list):
        fail("input", "must be a string or a list of items")
    out: list[dict] = []
    sources: list[str] = []
    assistant: dict | None = None  # the assistant message that function calls join
    reasoning: str | None = None  # from a reasoning item, for the next assistant message

    def add(message: dict, where: str) -> None:
        out.append(message)
        sources.append(where)

    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            fail(where, "must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                fail(f"{where}.role", "must be 'user', 'system', 'developer' or 'assistant'")
            if role == "assistant":
                assistant = {"role": "assistant", "content": output_text(item.get("content"), where)}
                if reasoning is not None:
                    assistant["reasoning_content"], reasoning = reasoning, None
                add(assistant, where)
                continue
            assistant = None
            add({"role": "system" if role == "developer" else role,
                 "content": input_content(item.get("content"), where)}, where)
        elif kind == "reasoning":
            reasoning = (reasoning or "") + reasoning_text(item, where, signer)
        elif kind == "function_call":
            call = function_call(item, where, flat_names)
            if assistant is None or reasoning is not None:
                assistant = {"role": "assistant", "content": ""}
                if reasoning is not None:
                    assistant["reasoning_content"], reasoning = reasoning, None
                add(assistant, where)
            assistant.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            assistant = None
            output = item.get("output")
            if not isinstance(item.get("call_id"), str):
                fail(f"{where}.call_id", "is required")
            if isinstance(output, list):
                output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
            if not isinstance(output, str):
                fail(f"{where}.output", "must be a string or a list of input_text parts")
            add({"role": "tool", "tool_call_id": item["call_id"], "content": output}, where)
        else:
            fail(f"{where}.type", f"{kind!r} items are not supported (message, reasoning, function_call and "
                                  "function_call_output are)")
    return out, sources


def typed_parts(content, where: str, expected: str) -> list[tuple[str, str | None, dict]]:
    """A message's content parts: (where, type, part) for each."""
    if not isinstance(content, list):
        fail(f"{where}.content", f"must be a string or a list of {expected}")
    return [(f"{where}.content[{j}]", p.get("type") if isinstance(p, dict) else None, p)
            for j, p in enumerate(content)]


def input_content(content, where: str):
    if isinstance(content, str):
        return content
    parts = []
    for at, kind, p in typed_parts(content, where, "input_text and input_image parts"):
        if kind == "input_text":
            parts.append({"type": "text", "text": p.get("text")})
        elif kind == "input_image":
            if not isinstance(p.get("image_url"), str):
                fail(f"{at}.image_url", "images are accepted by URL only (file_id is not supported)")
            parts.append({"type": "image_url", "image_url": {"url": p["image_url"]}})
        else:
            fail(f"{at}.type", f"{kind!r} parts are not supported (input_text and input_image are)")
    return parts


def output_text(content, where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for at, kind, p in typed_parts(content, where, "output_text parts"):
        if kind not in ("output_text", "input_text", "refusal"):
            fail(f"{at}.type", "an assistant message holds output_text parts")
        texts.append(p.get("refusal", "") if kind == "refusal" else p.get("text", ""))
    return "".join(t for t in texts if isinstance(t, str))


def reasoning_text(item: dict, where: str, signer: ReasoningSigner) -> str:
    """The reasoning that `encrypted_content` seals (checked: a seal that is not this server's is
    refused), else its own text (`content`), else its summary."""
    sealed = item.get("encrypted_content")
    if sealed is not None:
        text = signer.open(sealed)
        if text is None:
            fail(f"{where}.encrypted_content", "was not sealed by this server, or was changed (reasoning can "
                                               "only be sent back as Moonserve returned it)")
        return text
    for key in ("content", "summary"):
        parts = item.get(key)
        if parts:
            if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
                fail(f"{where}.{key}", "must be a list of text parts")
            return "".join(p.get("text", "") for p in parts)
    return ""


def function_call(item: dict, where: str, flat_names: dict[tuple[str, str], str]) -> dict:
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            fail(f"{where}.{key}", "is required: a string")
    try:
        json.loads(item["arguments"] or "{}")
    except ValueError:
        fail(f"{where}.arguments", "must be a JSON object as a string")
    name = item["name"]
    if isinstance(item.get("namespace"), str):  # the name the model saw for it
        name = flat_names.get((item["namespace"], name), name)
    return {"id": item["call_id"], "type": "function", "function": {"name": name, "arguments": item["arguments"]}}
