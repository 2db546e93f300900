"""Input processing for the embedded engine: a conversation becomes what the engine core runs.

The prompt text (the chat template, reasoning kept in the history, media markers), its tokens
(through mtmd when images come along, with placeholder ids derived from each image), the output
bounds, and the samplers with their grammars (forced tool calls, JSON schemas, guided thinking).
Runs in a worker thread; raises PromptTooLong, TemplateRenderError or UnsupportedResponseFormat for
what the deployment cannot take.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from ...formats.template import ChatTemplate, TemplateRenderError, with_one_system_message
from .settings import EmbeddedDeployment
from ..protocol import ChatOptions, Conversation, PromptTooLong, UnsupportedResponseFormat
from . import grammars
from .llama import LlamaError, Model, Sampler, Vision


def text_of(content) -> str:
    """A message's content as text for a text-only template: parts of type text, joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


class InputProcessor:
    def __init__(self, deployment: EmbeddedDeployment, model: Model, template: ChatTemplate,
                 vision: Vision | None, context_length: int):
        self.deployment = deployment
        self.model = model
        self.template = template
        self.vision = vision
        self.context_length = context_length  # tokens a sequence may hold, prompt and output

    def render(self, conversation: Conversation, options: ChatOptions) -> str:
        """The prompt text. Reasoning that the service kept in the history is rendered the way the
        template knows (its `reasoning_content` field, for the current turn) or inline as a
        `<think>` block before the answer, which every think-tag model reads."""
        template_knows_reasoning = "reasoning_content" in self.template.source
        messages = conversation.messages
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        media = {(item.message, item.part): item for item in conversation.media}
        rendered = []
        for i, m in enumerate(messages):
            m = dict(m)
            m["content"] = self._content_text(i, m.get("content"), media)
            reasoning = m.pop("reasoning_content", None)
            if reasoning:
                if template_knows_reasoning and i > last_user:
                    m["reasoning_content"] = reasoning
                else:
                    m["content"] = f"<think>\n{reasoning}\n</think>\n\n{m['content']}"
            rendered.append(m)
        variables = {}
        if self.deployment.thinking_variable != "none":
            variables[self.deployment.thinking_variable] = options.thinking
        tools = conversation.tools if options.tool_choice != "none" else None
        try:
            return self.template.render(rendered, tools=tools, **variables)
        except TemplateRenderError:
            merged = with_one_system_message(rendered)
            if merged is rendered:
                raise
            # the template takes a system message only first: where they stood is lost, their text is not
            return self.template.render(merged, tools=tools, **variables)

    @staticmethod
    def _content_text(i: int, content, media: dict) -> str:
        """Text parts as they are; each image, and each frame of a video, as a media marker."""
        if not isinstance(content, list):
            return text_of(content)
        out = []
        for j, part in enumerate(content):
            if part.get("type") == "text":
                out.append(part.get("text", ""))
            elif (i, j) in media:
                out.append(Vision.MARKER * len(media[(i, j)].frames))
        return "".join(out)

    def tokenize_prompt(self, text: str) -> list[int]:
        model = self.model
        add_bos = model.add_bos and not text.startswith(self.template.bos_token or "\0")
        return model.tokenize(text, add_special=add_bos, parse_special=True)

    def forced_call(self, conversation: Conversation, options: ChatOptions, first_index: int):
        """(prefix, grammar) for a forced tool call (tool_choice "required" or a named function):
        the prefix opens the call in the answer and is parsed like generated text; the grammar
        makes the rest a complete call whose arguments match the tool's schema."""
        if options.tool_choice in ("auto", "none") or not self.deployment.calls_tools:
            return "", None
        fmt = self.deployment.tool_parser
        return (grammars.forced_call_prefix(fmt, options.tool_choice, first_index),
                grammars.forced_call_grammar(fmt, options.tool_choice, conversation.tools or [], first_index))

    def tokenize_with_media(self, text: str, conversation: Conversation):
        """The prompt with each image's tokens as placeholder ids derived from the image's content
        (so the prefix cache reuses the same image and never a different one), the mtmd chunks by
        position, a release function, and (image tokens, video tokens)."""
        images, kinds = [], []
        for item in conversation.media:
            for frame in item.frames:
                rgb = frame.tobytes()
                digest = hashlib.sha256(rgb + f"{frame.width}x{frame.height}".encode()).hexdigest()
                images.append((rgb, frame.width, frame.height, digest))
                kinds.append(item.kind)
        add_bos = self.model.add_bos and not text.startswith(self.template.bos_token or "\0")
        chunks, parts = self.vision.tokenize(text, images, add_special=add_bos)
        prompt: list[int] = []
        positions: dict[int, object] = {}
        counts = {"image": 0, "video": 0}
        k = 0
        for kind, payload in parts:
            if kind == "text":
                prompt.extend(payload)
                continue
            chunk, n, digest = payload
            positions[len(prompt)] = chunk
            base = int(digest[:15], 16)
            prompt.extend(-(1 + (base + i) % (1 << 30)) for i in range(n))
            counts[kinds[k]] += n
            k += 1
        return prompt, positions, lambda: self.vision.free_chunks(chunks), counts

    def prepare(self, conversation: Conversation, options: ChatOptions) -> "Prepared":
        """Input processing, in a worker thread: the prompt text, its tokens (and media chunks), the
        output bounds and the samplers (grammars are parsed here). Raises PromptTooLong,
        TemplateRenderError or UnsupportedResponseFormat for what this deployment cannot take."""
        d = self.deployment
        text = self.render(conversation, options)
        first_tool_index = sum(len(m.get("tool_calls") or ()) for m in conversation.messages)
        forced, call_grammar = self.forced_call(conversation, options, first_tool_index)
        limit = self.context_length
        # Every token is at most max_token_bytes long: a prompt this long cannot fit, tokenized or not.
        if len(text) > 2 * (limit - 1) * self.model.max_token_bytes:
            raise PromptTooLong(len(text) // self.model.max_token_bytes, limit - 1, at_least=True)
        p = Prepared(forced=forced, first_tool_index=first_tool_index)
        try:
            if conversation.media:
                p.prompt, p.images, p.release, p.media_tokens = self.tokenize_with_media(text + forced, conversation)
                if p.prompt[-1] < 0:  # nothing after the image would carry the logits to sample from
                    raise TemplateRenderError("the chat template ends the prompt with an image")
            else:
                p.prompt = self.tokenize_prompt(text + forced)
            if len(p.prompt) >= limit:
                raise PromptTooLong(len(p.prompt), limit - 1)
            p.reasoning = self.deployment.thinks and options.thinking and not forced
            p.starts_in_reasoning = p.reasoning and text.rstrip().endswith("<think>")
            # max_completion_tokens bounds everything generated; max_tokens only the answer, which
            # the engine can bound by itself only when no reasoning comes first. The deployment's
            # max_output_tokens caps everything generated, whatever the request asks for.
            p.max_new = limit - len(p.prompt)
            if options.max_completion_tokens is not None:
                p.max_new = min(p.max_new, options.max_completion_tokens)
            if d.max_output_tokens:
                p.max_new = min(p.max_new, d.max_output_tokens)
            p.answer_limit = options.max_tokens
            if p.answer_limit is not None and not p.reasoning:
                p.max_new, p.answer_limit = min(p.max_new, p.answer_limit), None
            self._samplers(p, options, call_grammar or grammars.response_format_grammar(options.response_format))
            return p
        except BaseException:
            p.close()
            raise

    def _samplers(self, p: "Prepared", options: ChatOptions, answer_grammar: str | None) -> None:
        """The answer's sampler (constrained by `answer_grammar`, if any) and, when reasoning comes
        first, the reasoning's, which hands over to the answer's after `</think>`. With guided
        thinking the reasoning is constrained too (see grammars.thinking_grammar)."""
        d = self.deployment
        sampling = dict(temperature=d.temperature if d.temperature is not None else options.temperature,
                        top_p=d.top_p if d.top_p is not None else options.top_p, seed=options.seed)

        def sampler(grammar: str | None, param: str) -> Sampler:
            try:
                return Sampler(**sampling, grammar=grammar, model=self.model)
            except LlamaError as exc:
                raise UnsupportedResponseFormat(f"this JSON schema cannot be enforced: {exc}", param) from None

        answer_param = "tools" if options.tool_choice not in ("auto", "none") else "response_format.json_schema.schema"
        answer = sampler(answer_grammar, answer_param) if answer_grammar else None
        if not p.reasoning:
            p.sampler = answer or sampler(None, "")
            return
        p.guided = d.guided_thinking_lines > 0 and p.starts_in_reasoning
        if p.guided:
            p.sampler = sampler(grammars.thinking_grammar(d.guided_thinking_lines, d.guided_thinking_line_chars), "")
            p.later_sampler = answer or sampler(None, "")
        else:
            p.sampler = sampler(None, "")
            p.later_sampler = answer

    def count_tokens(self, conversation: Conversation, options: ChatOptions) -> int:
        """The prompt's length in tokens, as `chat` would send it (sync: call it off the event loop)."""
        text = self.render(conversation, options)
        if len(text) > 2 * self.context_length * self.model.max_token_bytes:
            raise PromptTooLong(len(text) // self.model.max_token_bytes, self.context_length - 1, at_least=True)
        return len(self.tokenize_prompt(text))


@dataclass
class Prepared:
    """A request after input processing: what the engine core and the output processing need."""

    forced: str
    first_tool_index: int
    prompt: list[int] = field(default_factory=list)
    images: dict = field(default_factory=dict)
    release: Callable[[], None] | None = None
    media_tokens: dict = field(default_factory=lambda: {"image": 0, "video": 0})
    reasoning: bool = False
    starts_in_reasoning: bool = False
    max_new: int = 0
    answer_limit: int | None = None
    sampler: Sampler | None = None
    later_sampler: Sampler | None = None  # takes over after `</think>` (guided: where its grammar ends)
    guided: bool = False

    def close(self) -> None:
        """Free what was allocated, for a request that never reaches the engine core."""
        for s in (self.sampler, self.later_sampler):
            if s is not None:
                s.close()
        if self.release is not None:
            self.release()
            self.release = None
