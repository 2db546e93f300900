"""The model card's rules, applied to one request: what is refused, what is fixed, what is ignored.

Each rule either raises `InvalidParameter` naming the field, or shapes the engine's `ChatOptions`.
A client value that the card fixes is never applied: it is ignored and listed in `ignored`, which
the HTTP layer reports in the `X-Moonserve-Ignored-Params` header.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire import ChatRequest
from ..catalog import ModelCard
from ..engines.protocol import ChatOptions
from ..errors import InvalidParameter

MAX_STOP_SEQUENCES = 16

# Fixed by every Kimi card: a client's value is ignored (many SDKs and agent frameworks send
# temperature or top_p by default; refusing them would break those clients).
IGNORED_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty")


@dataclass
class Decision:
    options: ChatOptions
    ignored: list[str] = field(default_factory=list)
    include_usage: bool = False


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

    fmt = (req.response_format or {}).get("type", "text")
    if fmt != "text":
        if fmt in ("json_object", "json_schema"):
            raise InvalidParameter(
                f"response_format {fmt!r} is not available on this deployment yet", param="response_format"
            )
        raise InvalidParameter(
            "response_format.type must be one of 'text', 'json_object', 'json_schema'", param="response_format"
        )

    thinking = thinking_enabled(req, card)
    if thinking:
        check_thinking_tool_rules(req)
    ignored = [name for name in IGNORED_SAMPLING if getattr(req, name) is not None]
    options = ChatOptions(
        thinking=thinking,
        max_tokens=req.max_tokens,
        max_completion_tokens=req.max_completion_tokens,
        temperature=card.temperature(thinking),
        top_p=card.top_p,
        seed=req.seed,
        stop=stop,
    )
    return Decision(options=options, ignored=ignored, include_usage=include_usage)


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
