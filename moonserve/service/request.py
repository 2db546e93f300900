"""The chat call's request body as pydantic models: the wire format, shared by api/ and service/.

Every field of API.md is accepted; unknown extra fields are kept, never a crash. Validation errors
become a 400 naming the field (see `api/errors.py`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImageURL(_Open):
    url: str
    detail: str | None = None


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: ImageURL


class VideoURL(_Open):
    url: str


class VideoURLPart(_Open):
    type: Literal["video_url"]
    video_url: VideoURL
    fps: float | None = Field(default=None, ge=0.1, le=10)


class VideoFramesPart(_Open):
    type: Literal["video"]
    video: list[str] = Field(min_length=1)
    fps: float | None = Field(default=None, ge=0.1, le=10)


ContentPart = Annotated[Union[TextPart, ImagePart, VideoURLPart, VideoFramesPart], Field(discriminator="type")]


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    partial: bool | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class Thinking(_Open):
    """Moonshot's own switch: `{"type": "enabled"|"disabled", "keep": "all"|null}`."""

    type: Literal["enabled", "disabled"]
    keep: str | None = None


class ChatRequest(_Open):
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    enable_thinking: bool | None = None
    preserve_thinking: bool | None = None
    thinking: Thinking | None = None
    reasoning_effort: str | None = None
    thinking_budget: int | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    stop: str | list[str] | None = None
    n: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
