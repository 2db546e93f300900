"""The embedded engine: llama.cpp in this process.

Async side of the engine: renders the chat template, tokenizes (through mtmd when images come
along), hands a `Sequence` to the `Runner` thread, and turns the tokens it sends back into deltas:
UTF-8 assembly, stop sequences, the reasoning and tool-call parsers, length bounds and usage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

from ...chat.output import OutputPipeline
from ...chat.template import ChatTemplate, TemplateRenderError
from ...chat.text_stream import StopMatcher, Utf8Stream
from ...config import DeploymentConfig
from ...workers import offload
from ..protocol import (ChatOptions, Conversation, Delta, EngineOverloaded, Finish, PromptTooLong,
                        UnsupportedResponseFormat, Usage)
from . import grammars
from .llama import Context, LlamaError, Model, Sampler, Vision
from .prefix_cache import PrefixCache
from .runner import Runner
from .sequence import Done, Failed, Sequence, Token
from .weights import resolve_weights

log = logging.getLogger("moonserve.engine")

# A deployment's queue: requests beyond the running slots wait here; past it, 503.
MAX_WAITING_PER_SLOT = 8

def text_of(content) -> str:
    """A message's content as text for a text-only template: parts of type text, joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


class EmbeddedEngine:
    def __init__(self, deployment: DeploymentConfig, models_dir: Path):
        self.name = deployment.name
        self.deployment = deployment
        self.models_dir = models_dir
        self.model: Model | None = None
        self.runner: Runner | None = None
        self.template: ChatTemplate | None = None
        self.vision: Vision | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self.runner.start()

    def _load(self) -> None:
        d = self.deployment
        path = resolve_weights(d.model, self.models_dir)
        log.info("deployment %s: loading %s", d.name, path)
        model = Model(str(path))
        if d.chat_template:
            source = resolve_weights(d.chat_template, self.models_dir).read_text()  # a path, package: or hf://
        else:
            source = model.chat_template()
            if not source:
                raise ValueError(f"deployment {d.name}: {path.name} has no chat template; set chat_template")
        self.template = ChatTemplate(
            source, bos_token=model.token_text(model.bos_id), eos_token=model.token_text(model.eos_id)
        )
        ctx = Context(model, n_ctx_seq=d.context_length, n_seq=d.max_sequences, n_batch=d.batch_tokens,
                      threads=d.threads)
        if d.mmproj:
            mmproj = resolve_weights(d.mmproj, self.models_dir)
            log.info("deployment %s: loading vision projector %s", d.name, mmproj)
            self.vision = Vision(str(mmproj), model, d.threads)
        cache = None
        if d.prefix_cache_mb > 0:
            cache = PrefixCache(d.prefix_cache_mb * 1024 * 1024, max(1, d.prefix_cache_min_tokens))
        max_waiting = d.max_waiting if d.max_waiting is not None else d.max_sequences * MAX_WAITING_PER_SLOT
        self.model = model
        self.runner = Runner(model, ctx, max_waiting=max_waiting, cache=cache, vision=self.vision,
                             max_decode_slowdown=max(1.1, d.max_decode_slowdown),
                             unpaced_tokens=max(0, d.prefill_unpaced_tokens),
                             prefill_ctx=self._prefill_context(model, ctx.threads))

    def _prefill_context(self, model: Model, threads: int) -> Context | None:
        """The prefill worker's one-sequence context, on its share of the threads (none on one core)."""
        d = self.deployment
        n = threads // 2 if d.prefill_threads is None else min(d.prefill_threads, threads - 1)
        if n <= 0:
            return None
        return Context(model, n_ctx_seq=d.context_length, n_seq=1, n_batch=d.batch_tokens, threads=n)

    async def close(self) -> None:
        if self.runner:
            await asyncio.to_thread(self.runner.stop)
            self.runner.ctx.close()
            if self.runner.prefill is not None:
                self.runner.prefill.ctx.close()
        if self.vision:
            self.vision.close()
        if self.model:
            self.model.close()

    def stats(self) -> dict:
        return self.runner.stats() if self.runner else {"loading": True}

    # -- prompt ---------------------------------------------------------------------------------

    @property
    def accepts_media(self) -> bool:
        return self.vision is not None

    @property
    def supports_tools(self) -> bool:
        return self.deployment.tool_parser != "none"

    @property
    def thinks(self) -> bool:
        return self.deployment.reasoning_parser != "none"

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
        return self.template.render(rendered, tools=tools, **variables)

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
        if options.tool_choice in ("auto", "none") or not self.supports_tools:
            return "", None
        fmt = self.deployment.tool_parser
        return (grammars.forced_call_prefix(fmt, options.tool_choice, first_index),
                grammars.forced_call_grammar(fmt, options.tool_choice, conversation.tools or [], first_index))

    # -- generation -----------------------------------------------------------------------------

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
        limit = self.runner.ctx.n_ctx_seq
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
            p.reasoning = self.thinks and options.thinking and not forced
            p.starts_in_reasoning = p.reasoning and text.rstrip().endswith("<think>")
            # max_completion_tokens bounds everything generated; max_tokens only the answer, which
            # the engine can bound by itself only when no reasoning comes first. A request that
            # bounds neither gets the deployment's max_output_tokens.
            p.max_new = limit - len(p.prompt)
            if options.max_completion_tokens is not None:
                p.max_new = min(p.max_new, options.max_completion_tokens)
            elif options.max_tokens is None and d.max_output_tokens:
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
        if len(text) > 2 * self.runner.ctx.n_ctx_seq * self.model.max_token_bytes:
            raise PromptTooLong(len(text) // self.model.max_token_bytes, self.runner.ctx.n_ctx_seq - 1, at_least=True)
        return len(self.tokenize_prompt(text))

    def chat(self, conversation: Conversation, options: ChatOptions) -> "EmbeddedGeneration":
        return EmbeddedGeneration(self, conversation, options)


@dataclass
class Prepared:
    """A request after input processing: what the runner and the output processing need."""

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
        """Free what was allocated, for a request that never reaches the runner."""
        for s in (self.sampler, self.later_sampler):
            if s is not None:
                s.close()
        if self.release is not None:
            self.release()
            self.release = None


class EmbeddedGeneration:
    """One request's generation: `deltas`, and `usage()`, what it has used so far. The counts are
    this object's own; the `Finish` delta carries them at the end."""

    def __init__(self, engine: EmbeddedEngine, conversation: Conversation, options: ChatOptions):
        self.engine = engine
        self.prompt_tokens = 0
        self.media_tokens = {"image": 0, "video": 0}
        self.counts = {"reasoning": 0, "answer": 0, "undecided": 0}
        self.completion_tokens = 0
        self.seq: Sequence | None = None
        self.deltas: AsyncIterator[Delta] = self._run(conversation, options)

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                     cached_tokens=self.seq.n_cached if self.seq else 0, reasoning_tokens=self.counts["reasoning"],
                     image_tokens=self.media_tokens["image"], video_tokens=self.media_tokens["video"])

    async def _prepare(self, conversation: Conversation, options: ChatOptions) -> Prepared:
        done: list[Prepared] = []

        def work() -> Prepared:
            done.append(self.engine.prepare(conversation, options))
            return done[0]

        try:
            return await offload(work)
        except BaseException:
            for p in done:  # cancelled while the worker ran: it finished all the same
                p.close()
            raise

    async def _run(self, conversation: Conversation, options: ChatOptions) -> AsyncIterator[Delta]:
        engine = self.engine
        p = await self._prepare(conversation, options)
        pipeline = OutputPipeline(
            reasoning=engine.thinks,
            starts_in_reasoning=p.starts_in_reasoning,
            tool_format=engine.deployment.tool_parser if conversation.tools and engine.supports_tools else None,
            first_tool_index=p.first_tool_index,
        )
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        seq = Sequence(prompt=p.prompt, max_new_tokens=p.max_new, sampler=p.sampler, images=p.images,
                       release=p.release, emit=lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev))
        if p.later_sampler is not None:
            seq.later_sampler = p.later_sampler
            if p.guided:
                seq.switch_at_end = True
            else:
                seq.switch_after = b"</think>"
        self.seq = seq
        self.prompt_tokens = len(p.prompt)
        self.media_tokens = p.media_tokens
        engine.runner.submit(seq)

        utf8 = Utf8Stream()
        stops = StopMatcher(options.stop)
        piece = engine.model.piece
        counts = self.counts
        answer_limit = p.answer_limit
        finished = False

        def finish(reason: str, completion_tokens: int) -> Finish:
            if reason == "stop" and pipeline.tool_calls_done:
                reason = "tool_calls"
            self.completion_tokens = completion_tokens
            return Finish(reason, self.usage())

        try:
            for d in pipeline.feed(p.forced):
                yield d
            while True:
                ev = await events.get()
                if type(ev) is Token:
                    was_reasoning = pipeline.in_reasoning
                    for d in pipeline.feed(stops.feed(utf8.feed(piece(ev.id)))):
                        yield d
                    if pipeline.undecided:  # whitespace or part of "<think>": counted once decided
                        counts["undecided"] += 1
                    else:
                        kind = "reasoning" if was_reasoning or pipeline.in_reasoning else "answer"
                        counts[kind] += 1 + counts["undecided"]
                        counts["undecided"] = 0
                    self.completion_tokens += 1
                    reason = None
                    if stops.stopped:
                        reason = "stop"
                    elif pipeline.tool_calls_done and not options.parallel_tool_calls and not pipeline.in_tool_call:
                        reason = "stop"  # one call is the whole reply unless parallel calls were asked for
                    elif answer_limit is not None and counts["answer"] >= answer_limit:
                        reason = "length"
                    if reason:
                        finished = True
                        engine.runner.cancel(seq)
                        for d in pipeline.flush():
                            yield d
                        yield finish(reason, self.completion_tokens)
                        return
                elif type(ev) is Done:
                    finished = True
                    for d in pipeline.feed(stops.feed(utf8.flush()) + stops.flush()) + pipeline.flush():
                        yield d
                    yield finish(ev.reason, ev.completion_tokens)
                    return
                elif type(ev) is Failed:
                    finished = True
                    if isinstance(ev.error, EngineOverloaded):
                        raise ev.error
                    raise RuntimeError(f"engine failure: {ev.error}") from ev.error
        finally:
            if not finished:  # the consumer went away (client disconnect): free the sequence
                engine.runner.cancel(seq)
