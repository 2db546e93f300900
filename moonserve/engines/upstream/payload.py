"""What the upstream is sent for one conversation.

The service has already applied the model card's rules, `preserve_thinking` and the media checks;
here they are only written in the upstream's terms. Images and video frames were fetched and decoded
by Moonserve (the SSRF guard, the caps, the formats): they go as JPEG `data:` URLs, so no engine ever
fetches a URL itself. A video is sent as its frames, one image each.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

from .settings import UpstreamDeployment
from ..protocol import ChatOptions, Conversation

TEMPLATE_FLAVOURS = ("vllm", "sglang", "llamacpp")  # they take chat_template_kwargs


def data_url(frame: Image.Image) -> str:
    buf = io.BytesIO()
    frame.convert("RGB").save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def messages_for_upstream(conversation: Conversation) -> list[dict]:
    media = {(m.message, m.part): m for m in conversation.media}
    out = []
    for i, message in enumerate(conversation.messages):
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                item = media.get((i, j))
                if item is None:
                    parts.append(part)
                else:
                    parts.extend({"type": "image_url", "image_url": {"url": data_url(f)}} for f in item.frames)
            message = {**message, "content": parts}
        out.append(message)
    return out


def upstream_limit(options: ChatOptions) -> int | None:
    """What bounds the upstream's output. `max_completion_tokens` bounds reasoning and answer, as the
    upstream's `max_tokens` does; `max_tokens` bounds the answer only, which the upstream can bound by
    itself only when no reasoning comes first: in thinking mode it gets room (the deployment's cap) and
    Moonserve ends the answer itself (engine.py). The deployment's max_output_tokens caps it all."""
    if options.max_completion_tokens is not None:
        return options.max_completion_tokens
    return None if options.thinking else options.max_tokens


def build_payload(d: UpstreamDeployment, conversation: Conversation, options: ChatOptions, model: str) -> dict:
    """Blocking (images are encoded here): the engine runs it in a worker thread."""
    payload: dict = {
        "model": model,
        "messages": messages_for_upstream(conversation),
        "stream": True,
        # always: the ledger needs the upstream's count, whatever the client asked for
        "stream_options": {"include_usage": True},
        "temperature": options.temperature,
        "top_p": options.top_p,
    }
    # usage so far in every chunk, for a call that ends before the upstream's final usage
    if d.flavour in ("vllm", "sglang"):
        payload["stream_options"]["continuous_usage_stats"] = True
    elif d.flavour == "llamacpp":
        payload["timings_per_token"] = True
    if d.flavour in TEMPLATE_FLAVOURS:
        if d.thinking_variable != "none":
            payload["chat_template_kwargs"] = {d.thinking_variable: options.thinking}
    else:
        payload["enable_thinking"] = options.thinking
    limit = min((n for n in (upstream_limit(options), d.max_output_tokens) if n), default=None)
    if limit:
        payload["max_tokens"] = limit
    if options.seed is not None:
        payload["seed"] = options.seed
    if options.stop:
        payload["stop"] = options.stop
    if options.response_format is not None:
        payload["response_format"] = options.response_format
    if conversation.tools:
        payload["tools"] = conversation.tools
        choice = options.tool_choice
        payload["tool_choice"] = choice if choice in ("auto", "none", "required") else {
            "type": "function", "function": {"name": choice}}
        payload["parallel_tool_calls"] = options.parallel_tool_calls
    return payload
