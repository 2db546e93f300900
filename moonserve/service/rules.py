"""The model card's rules, applied to one request: what is refused, what is fixed, what is ignored.

Each rule either raises `InvalidParameter` naming the field, or shapes the engine's `ChatOptions`.
A client value that the card fixes is never applied: it is ignored and listed in `ignored`, which
the HTTP layer reports in the `X-Moonserve-Ignored-Params` header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .request import ChatRequest
from ..catalog import ModelCard
from ..engines.protocol import ChatOptions, Usage
from ..errors import InvalidParameter
from .schemas import check_schema_bounds

MAX_STOP_SEQUENCES = 16
MAX_TOOLS = 128
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Fixed by every Kimi card: a client's value is ignored (many SDKs and agent frameworks send
# temperature or top_p by default; refusing them would break those clients).
IGNORED_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty")


@dataclass
class Decision:
    options: ChatOptions
    ignored: list[str] = field(default_factory=list)
    include_usage: bool = False
    preserve_thinking: bool = False


def thinking_enabled(req: ChatRequest, card: ModelCard) -> bool:
    """Resolve enable_thinking / Moonshot's `thinking` switch against the card."""
    if req.enable_thinking is not None and req.thinking is not None:
        if req.enable_thinking != (req.thinking.type == "enabled"):
            raise InvalidParameter(
                "enable_thinking and thinking.type disagree; send one of them", param="enable_thinking"
            )
    wanted = req.enable_thinking
    if wanted is None and req.thinking is not None:
        wanted = req.thinking.type == "enabled"
    if card.thinking_only:
        if wanted is False:
            raise InvalidParameter(
                "The value of the enable_thinking parameter is restricted to True.", param="enable_thinking"
            )
        return True
    return card.thinking_default if wanted is None else wanted


def decide(req: ChatRequest, card: ModelCard) -> Decision:
    if req.n is not None and req.n != 1:
        raise InvalidParameter("n: only 1 is supported for this model", param="n")
    if req.top_k is not None:
        raise InvalidParameter(f"top_k cannot be set for model {card.id}", param="top_k")
    if req.thinking_budget is not None:
        raise InvalidParameter(f"thinking_budget cannot be used with model {card.id}", param="thinking_budget")
    if req.logprobs or req.top_logprobs is not None:
        raise InvalidParameter(f"logprobs are not supported for model {card.id}", param="logprobs")

    include_usage = False
    if req.stream_options is not None:
        if not req.stream:
            raise InvalidParameter("stream_options is only allowed when stream is true", param="stream_options")
        extra = set(req.stream_options.model_fields_set) | set(req.stream_options.model_extra or {})
        if extra - {"include_usage"} or req.stream_options.include_usage is not True:
            raise InvalidParameter(
                'stream_options: the only supported value is {"include_usage": true}', param="stream_options"
            )
        include_usage = True

    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidParameter(f"stop: at most {MAX_STOP_SEQUENCES} sequences", param="stop")
    if any(not isinstance(s, str) or not s for s in stop):
        raise InvalidParameter("stop: sequences must be non-empty strings", param="stop")

    check_media_parts(req)
    for i, m in enumerate(req.messages):
        if m.role == "tool" and not m.tool_call_id:
            raise InvalidParameter(f"messages[{i}].tool_call_id is required for a tool message",
                                   param=f"messages[{i}].tool_call_id")
    response_format = check_response_format(req.response_format)
    tools = check_tools(req.tools)
    tool_choice = check_tool_choice(req.tool_choice, tools)
    check_forced_tool_schemas(tools, tool_choice)

    thinking = thinking_enabled(req, card)
    if thinking:
        check_thinking_tool_rules(req)
    ignored = [name for name in IGNORED_SAMPLING if getattr(req, name) is not None]
    if req.reasoning_effort is not None:  # OpenAI's effort levels: these models take no thinking budget
        ignored.append("reasoning_effort")
    preserve = preserve_thinking(req, card)
    if card.preserve_thinking == "unsupported" and req.preserve_thinking is not None:
        ignored.append("preserve_thinking")
    options = ChatOptions(
        thinking=thinking,
        max_tokens=req.max_tokens,
        max_completion_tokens=req.max_completion_tokens,
        temperature=card.temperature(thinking),
        top_p=card.top_p,
        seed=req.seed,
        stop=stop,
        tool_choice=tool_choice,
        parallel_tool_calls=bool(req.parallel_tool_calls),
        response_format=response_format,
    )
    return Decision(options=options, ignored=ignored, include_usage=include_usage, preserve_thinking=preserve)


def preserve_thinking(req: ChatRequest, card: ModelCard) -> bool:
    """Whether earlier turns' reasoning goes back into the prompt (the current tool-call loop's
    always does). Moonshot's `thinking.keep = "all"` asks the same."""
    if card.preserve_thinking == "unsupported":
        return False
    if req.preserve_thinking is not None:
        return req.preserve_thinking
    if req.thinking is not None and req.thinking.keep == "all":
        return True
    return card.preserve_thinking == "on"


def check_response_format(fmt: dict | None) -> dict | None:
    kind = (fmt or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise InvalidParameter(
            "response_format.type must be one of 'text', 'json_object', 'json_schema'", param="response_format.type"
        )
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise InvalidParameter(
            "response_format.json_schema must be an object with a `schema` object", param="response_format.json_schema"
        )
    check_schema(spec.get("schema", {}), "response_format.json_schema.schema")
    return {"type": "json_schema", "json_schema": spec}


def check_tools(tools: list[dict] | None) -> list[dict] | None:
    if tools is None:
        return None
    if len(tools) > MAX_TOOLS:
        raise InvalidParameter(f"tools: at most {MAX_TOOLS} tools", param="tools")
    names = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if tool.get("type") != "function":
            raise InvalidParameter(f"{where}.type must be 'function'", param=f"{where}.type")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise InvalidParameter(f"{where}.function must be an object", param=f"{where}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise InvalidParameter(
                f"{where}.function.name must match [A-Za-z0-9_-]{{1,64}}", param=f"{where}.function.name"
            )
        if name in names:
            raise InvalidParameter(f"{where}.function.name {name!r} is used twice", param=f"{where}.function.name")
        names.add(name)
        params = fn.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise InvalidParameter(f"{where}.function.parameters must be a JSON schema object",
                                       param=f"{where}.function.parameters")
            check_schema(params, f"{where}.function.parameters", enforced=False)
    return tools


def check_forced_tool_schemas(tools: list[dict] | None, tool_choice: str) -> None:
    """A forced call (tool_choice "required" or a named function) is generated under a grammar built
    from the tools' schemas: those must be enforceable."""
    if tool_choice in ("auto", "none"):
        return
    for i, tool in enumerate(tools or ()):
        fn = tool["function"]
        if fn.get("parameters") is not None and tool_choice in ("required", fn["name"]):
            check_schema_bounds(fn["parameters"], f"tools[{i}].function.parameters")


def check_schema(schema: dict, param: str, *, enforced: bool = True) -> None:
    """A valid JSON schema (draft 2020-12); when `enforced`, one that a grammar can enforce (see
    schemas.py)."""
    check_schema_bounds(schema, param, enforced=enforced)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidParameter(f"{param} is not a valid JSON schema: {exc.message}", param=param) from None
    except RecursionError:  # bounded above; a last guard all the same
        raise InvalidParameter(f"{param}: the schema is nested too deeply", param=param) from None


def check_tool_choice(choice, tools: list[dict] | None) -> str:
    """"auto" | "none" | "required" | the name of a function in tools."""
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidParameter('tool_choice must be "auto", "none", "required" or a function', param="tool_choice")
        if choice == "required" and not tools:
            raise InvalidParameter('tool_choice "required" needs tools', param="tool_choice")
        return choice
    name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
    if not isinstance(name, str):
        raise InvalidParameter(
            'tool_choice must be {"type": "function", "function": {"name": ...}}', param="tool_choice"
        )
    if name not in {t["function"]["name"] for t in tools or ()}:
        raise InvalidParameter(f"tool_choice names {name!r}, which is not in tools", param="tool_choice")
    return name


def check_thinking_tool_rules(req: ChatRequest) -> None:
    """Moonshot's rules for tool calling in thinking mode."""
    choice = req.tool_choice
    if choice is not None and choice not in ("auto", "none"):
        raise InvalidParameter(
            'tool_choice: in thinking mode only "auto" (default) and "none" are supported', param="tool_choice"
        )
    for i, m in enumerate(req.messages):
        if m.role == "assistant" and m.tool_calls and m.reasoning_content is None:
            raise InvalidParameter(
                "thinking is enabled but reasoning_content is missing in assistant tool call message "
                f"at index {i}",
                param=f"messages[{i}].reasoning_content",
            )


def check_media_parts(req: ChatRequest) -> None:
    """Images and videos come by http(s) URL only, in user messages."""
    for i, m in enumerate(req.messages):
        if not isinstance(m.content, list):
            continue
        for j, part in enumerate(m.content):
            urls = {"image_url": lambda p: [("image_url.url", p.image_url.url)],
                    "video_url": lambda p: [("video_url.url", p.video_url.url)],
                    "video": lambda p: [(f"video[{k}]", u) for k, u in enumerate(p.video)]}.get(part.type)
            if urls is None:
                continue
            if m.role != "user":
                raise InvalidParameter(f"messages[{i}].content[{j}]: images and videos are accepted in user "
                                       "messages only", param=f"messages[{i}].content[{j}]")
            for name, url in urls(part):
                where = f"messages[{i}].content[{j}].{name}"
                if not url.lower().startswith(("http://", "https://")):
                    raise InvalidParameter(
                        f"{where}: only http(s) URLs are accepted; base64 data URLs are not supported",
                        param=where)


def counted_usage(usage: Usage, card: ModelCard | None) -> Usage:
    """The usage as the card counts it: a cache hit shorter than its minimum is no hit (an upstream
    reports whatever its engine reused; the embedded engine applies the same minimum itself)."""
    if card is not None and 0 < usage.cached_tokens < card.cache_min_tokens:
        return replace(usage, cached_tokens=0)
    return usage

