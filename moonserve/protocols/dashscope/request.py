"""A DashScope request (`{"model", "input": {"messages" | "prompt"}, "parameters": {...}}`) read into
the call's terms (a Chat Completions request), and a refusal named in the request's own terms
(`input.messages[2].content[0].image`, `parameters.max_tokens`).

The content parts of the multimodal API (`{"text"}`, `{"image": url}`, `{"video": url}` or
`{"video": [frame urls]}`, with `fps`) become the call's parts. `parameters` are the chat call's own
fields, besides `result_format`, `incremental_output` and the SDK's `user_agent`, which only shape
the reply; a parameter the call does not know is named as ignored, not refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...catalog import card as find_card
from ...errors import ContextLengthExceeded, InvalidParameter, ModelStudioError
from ...service.request import ChatRequest

RESULT_FORMATS = ("message", "text")
REPLY_PARAMETERS = {"result_format", "incremental_output", "user_agent", "stream"}
CALL_PARAMETERS = set(ChatRequest.model_fields) - {"model", "messages", "stream", "stream_options"}
MESSAGE_FIELDS = {"role", "content", "name", "reasoning_content", "tool_calls", "tool_call_id", "partial"}


def fail(where: str, message: str) -> None:
    raise InvalidParameter(f"{where}: {message}", param=where)


@dataclass
class Turn:
    """What the protocol keeps of the request besides the call's own terms."""

    multimodal: bool  # the multimodal-generation API: content is a list of parts, in and out
    stream: bool
    result_format: str = "message"
    incremental: bool = False  # a stream's events carry only what is new (else the output so far)
    ignored: list[str] = field(default_factory=list)

    def rename(self, exc: ModelStudioError) -> ModelStudioError:
        """A refusal in this request's terms."""
        if isinstance(exc, ContextLengthExceeded):
            exc.param = "input.messages"
            return exc
        param = exc.param
        root = re.split(r"[.\[]", param, maxsplit=1)[0] if param else None
        if root == "messages" or root in CALL_PARAMETERS:
            exc.param = ("input." if param.startswith("messages") else "parameters.") + param
            exc.message = re.sub(rf"(?<![\w.\[]){re.escape(param)}(?!\w)", exc.param, exc.message)
        return exc


def to_chat_body(body: dict, *, multimodal: bool, stream: bool) -> tuple[dict, Turn]:
    turn = Turn(multimodal=multimodal, stream=stream)
    for k in body:
        if k not in ("model", "input", "parameters"):
            turn.ignored.append(k)
    inp = body.get("input")
    if not isinstance(inp, dict):
        fail("input", "must be an object holding messages (or a prompt)")
    params = body.get("parameters", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        fail("parameters", "must be an object")

    chat: dict = {"model": body.get("model")}
    for k, v in params.items():
        if k in CALL_PARAMETERS:
            chat[k] = v
        elif k not in REPLY_PARAMETERS:
            turn.ignored.append(f"parameters.{k}")
    result_format = params.get("result_format", "message")
    if result_format not in RESULT_FORMATS:
        fail("parameters.result_format", "must be 'message' or 'text'")
    if multimodal and result_format == "text":
        fail("parameters.result_format", "the multimodal API answers in the 'message' format only")
    incremental = params.get("incremental_output", False)
    if not isinstance(incremental, bool):
        fail("parameters.incremental_output", "must be true or false")
    if params.get("stream") is True:  # the SDK says it with X-DashScope-SSE; a hand-written body may say it here
        turn.stream = True
    if result_format == "text":
        check_text_format(chat)
    turn.result_format, turn.incremental = result_format, incremental
    chat["stream"] = turn.stream
    if turn.stream:
        chat["stream_options"] = {"include_usage": True}
    chat["messages"] = messages_of(inp)
    for k in inp:
        if k not in ("messages", "prompt", "history"):
            turn.ignored.append(f"input.{k}")
    return chat, turn


def check_text_format(chat: dict) -> None:
    """`text` carries the answer alone: no reasoning, no tool calls."""
    if chat.get("tools"):
        fail("parameters.result_format", "'text' cannot carry tool calls; use 'message' with tools")
    card = find_card(chat["model"]) if isinstance(chat.get("model"), str) else None
    wanted = chat.get("enable_thinking")
    if card is not None and (card.thinking_only or (card.thinking_default if wanted is None else wanted is True)):
        fail("parameters.result_format", f"'text' has no place for the reasoning of a thinking call ({card.id} "
             "thinks here); use 'message'" + ("" if card.thinking_only else ", or enable_thinking: false"))


def messages_of(inp: dict) -> list[dict]:
    messages = inp.get("messages")
    prompt = inp.get("prompt")
    history = inp.get("history")
    out: list[dict] = []
    if history is not None:  # the deprecated form: [{"user": ..., "bot": ...}]
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            fail("input.history", "must be a list of {\"user\", \"bot\"} objects")
        for i, h in enumerate(history):
            for role, key in (("user", "user"), ("assistant", "bot")):
                if key in h:
                    if not isinstance(h[key], str):
                        fail(f"input.history[{i}].{key}", "must be a string")
                    out.append({"role": role, "content": h[key]})
    if messages is not None:
        if not isinstance(messages, list):
            fail("input.messages", "must be a list of messages")
        out += [message(m, f"input.messages[{i}]") for i, m in enumerate(messages)]
    if prompt is not None:
        if not isinstance(prompt, str):
            fail("input.prompt", "must be a string")
        out.append({"role": "user", "content": prompt})
    if not out:
        fail("input.messages", "at least one message (or a prompt) is required")
    return out


def message(m, where: str) -> dict:
    if not isinstance(m, dict):
        fail(where, "must be an object with a role and content")
    out = {k: v for k, v in m.items() if k in MESSAGE_FIELDS}
    content = m.get("content")
    if isinstance(content, list):
        parts = [part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
        if m.get("role") in ("assistant", "system", "tool"):  # text only: the call takes a string there
            if any(p["type"] != "text" for p in parts):
                fail(f"{where}.content", f"a {m.get('role')} message holds text only")
            out["content"] = "".join(p["text"] for p in parts)
        else:
            out["content"] = parts
    return out


def part(p, where: str) -> dict:
    if not isinstance(p, dict):
        fail(where, "must be an object such as {\"text\": ...} or {\"image\": url}")
    fps = p.get("fps")
    if "text" in p:
        if not isinstance(p["text"], str):
            fail(f"{where}.text", "must be a string")
        return {"type": "text", "text": p["text"]}
    if "image" in p:
        if not isinstance(p["image"], str):
            fail(f"{where}.image", "must be a URL (http(s) or data:)")
        return {"type": "image_url", "image_url": {"url": p["image"]}}
    if "video" in p:
        video = p["video"]
        if isinstance(video, str):
            out: dict = {"type": "video_url", "video_url": {"url": video}}
        elif isinstance(video, list) and video and all(isinstance(f, str) for f in video):
            out = {"type": "video", "video": video}
        else:
            fail(f"{where}.video", "must be a video URL or a non-empty list of frame image URLs")
        if fps is not None:
            out["fps"] = fps
        return out
    kinds = ", ".join(sorted(k for k in p if k != "fps")) or "nothing"
    fail(where, f"holds {kinds}; a part holds one of text, image, video (audio is not supported)")
