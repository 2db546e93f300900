"""The embedded engine: llama.cpp in this process.

Its parts, as in nano-vllm and vLLM v1: the input processor (template, tokens, grammars; in a worker
thread), the engine core (its own thread: scheduler, prefix cache, model runner, prefill worker) and
the output processor (UTF-8, stops, parsers, usage; on the event loop). This module loads them and
joins them: `chat()` prepares a request, submits its sequence to the core and turns the events that
come back into deltas.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import AsyncIterator

from ...formats.template import ChatTemplate
from .settings import EmbeddedDeployment
from ...workers import offload
from ..protocol import Admitted, ChatOptions, Conversation, Delta, EngineOverloaded, Finish, Usage
from . import kernels
from .core import EngineCore
from .drafts import PromptLookup
from .input_processor import InputProcessor, Prepared
from .llama import Context, Model, Vision
from .output_processor import OutputProcessor
from .prefix_cache import PrefixCache
from .sequence import Done, Failed, Sequence, Token
from .weights import resolve_weights

log = logging.getLogger("moonserve.engine")

# A deployment's queue: requests beyond the running slots wait here; past it, 503.
MAX_WAITING_PER_SLOT = 8


class EmbeddedEngine:
    healthy = True  # in-process: it answers while the server does

    def __init__(self, deployment: EmbeddedDeployment, models_dir: Path):
        self.name = deployment.name
        self.deployment = deployment
        self.models_dir = models_dir
        self.model: Model | None = None
        self.vision: Vision | None = None
        self.inputs: InputProcessor | None = None
        self.core: EngineCore | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self.core.start()

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
        template = ChatTemplate(source, bos_token=model.token_text(model.bos_id), eos_token=model.token_text(model.eos_id))
        # Flash attention off in deterministic mode (kernels.py). With drafts it needs Moonserve's
        # kernels: llama.cpp's own attends each query row one KV cell at a time, so verifying a
        # 9-token draft at 2,300 tokens of context took 138 ms with it against 86 ms without flash
        # attention (Moonserve's: 83 ms; one token: 20 / 16 / 13.5 ms; a 2,400-token prefill ~10%
        # faster with flash attention), measured on 2 cores; and Moonserve's computes a row of a
        # decode step alike however many rows share the step, so drafts do not change an answer.
        # The prefill worker must agree (the KV state's layout depends on it).
        fast = self.flash_attention = not d.deterministic and (d.draft_tokens == 0 or kernels.loaded() == "moonserve")
        ctx = Context(model, n_ctx_seq=d.context_length, n_seq=d.max_sequences, n_batch=d.batch_tokens,
                      threads=d.threads, flash_attn=fast)
        if d.mmproj:
            mmproj = resolve_weights(d.mmproj, self.models_dir)
            log.info("deployment %s: loading vision projector %s", d.name, mmproj)
            self.vision = Vision(str(mmproj), model, d.threads, flash_attn=fast)
        cache = None
        if d.prefix_cache_mb > 0:
            cache = PrefixCache(d.prefix_cache_mb * 1024 * 1024, max(1, d.prefix_cache_min_tokens))
        max_waiting = d.max_waiting if d.max_waiting is not None else d.max_sequences * MAX_WAITING_PER_SLOT
        self.model = model
        self.inputs = InputProcessor(d, model, template, self.vision, ctx.n_ctx_seq)
        self.core = EngineCore(model, ctx, max_waiting=max_waiting, cache=cache, vision=self.vision,
                               max_decode_slowdown=max(1.1, d.max_decode_slowdown),
                               unpaced_tokens=max(0, d.prefill_unpaced_tokens),
                               prefill_ctx=self._prefill_context(model, ctx.threads))

    def _prefill_context(self, model: Model, threads: int) -> Context | None:
        """The prefill worker's one-sequence context, on its share of the threads (none on one core)."""
        d = self.deployment
        n = threads // 2 if d.prefill_threads is None else min(d.prefill_threads, threads - 1)
        if n <= 0:
            return None
        return Context(model, n_ctx_seq=d.context_length, n_seq=1, n_batch=d.batch_tokens, threads=n,
                       flash_attn=self.flash_attention)

    async def close(self) -> None:
        if self.core:
            await asyncio.to_thread(self.core.stop)
            self.core.ctx.close()
            if self.core.prefill is not None:
                self.core.prefill.ctx.close()
        if self.vision:
            self.vision.close()
        if self.model:
            self.model.close()

    def stats(self) -> dict:
        if not self.core:
            return {"loading": True}
        return {**self.core.stats(), "deterministic": self.deployment.deterministic, "kernels": kernels.loaded()}

    @property
    def context_length(self) -> int:
        return self.deployment.context_length

    @property
    def accepts_media(self) -> bool:
        return self.vision is not None

    @property
    def supports_tools(self) -> bool:
        return self.deployment.calls_tools

    def count_tokens(self, conversation: Conversation, options: ChatOptions) -> int:
        """The prompt's length in tokens, as `chat` would send it (sync: call it off the event loop)."""
        return self.inputs.count_tokens(conversation, options)

    def chat(self, conversation: Conversation, options: ChatOptions) -> "EmbeddedGeneration":
        return EmbeddedGeneration(self, conversation, options)


class EmbeddedGeneration:
    """One request's generation: `deltas`, and `usage()`, what it has used so far. The counts are
    this object's own; the `Finish` delta carries them at the end."""

    def __init__(self, engine: EmbeddedEngine, conversation: Conversation, options: ChatOptions):
        self.engine = engine
        self.prompt_tokens = 0
        self.media_tokens = {"image": 0, "video": 0}
        self.output: OutputProcessor | None = None
        self.seq: Sequence | None = None
        self.deltas: AsyncIterator[Delta] = self._run(conversation, options)

    def usage(self) -> Usage:
        out = self.output
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=out.completion_tokens if out else 0,
                     cached_tokens=self.seq.n_cached if self.seq else 0,
                     reasoning_tokens=out.reasoning_tokens if out else 0,
                     image_tokens=self.media_tokens["image"], video_tokens=self.media_tokens["video"])

    async def _prepare(self, conversation: Conversation, options: ChatOptions) -> Prepared:
        done: list[Prepared] = []

        def work() -> Prepared:
            done.append(self.engine.inputs.prepare(conversation, options))
            return done[0]

        try:
            return await offload(work)
        except BaseException:
            for p in done:  # cancelled while the worker ran: it finished all the same
                p.close()
            raise

    def _sequence(self, p: Prepared) -> Sequence:
        seq = Sequence(prompt=p.prompt, max_new_tokens=p.max_new, sampler=p.sampler, images=p.images,
                       release=p.release, loop=asyncio.get_running_loop(), events=asyncio.Queue())
        d = self.engine.deployment
        if d.draft_tokens > 0:
            seq.lookup = PromptLookup(d.draft_tokens)
        if p.later_sampler is not None:
            seq.later_sampler = p.later_sampler
            if p.guided:
                seq.switch_at_end = True
            else:
                seq.switch_after = b"</think>"
        return seq

    async def _run(self, conversation: Conversation, options: ChatOptions) -> AsyncIterator[Admitted | Delta]:
        engine = self.engine
        p = await self._prepare(conversation, options)
        out = self.output = OutputProcessor(
            engine.model.piece, reasoning=engine.deployment.thinks, starts_in_reasoning=p.starts_in_reasoning,
            tool_format=engine.deployment.tool_parser if conversation.tools and engine.supports_tools else None,
            first_tool_index=p.first_tool_index, stop=options.stop, answer_limit=p.answer_limit,
            parallel_tool_calls=options.parallel_tool_calls)
        scheduler = engine.core.scheduler
        if len(scheduler.waiting) >= scheduler.max_waiting:  # refused now, before a stream opens
            p.close()
            raise EngineOverloaded(f"{len(scheduler.waiting)} requests are already waiting")
        seq = self.seq = self._sequence(p)
        self.prompt_tokens = len(p.prompt)
        self.media_tokens = p.media_tokens
        engine.core.submit(seq)
        finished = False
        try:
            yield Admitted(self.prompt_tokens)
            for d in out.start(p.forced):
                yield d
            while True:
                ev = await seq.events.get()
                if type(ev) is Token:
                    deltas, reason = out.token(ev.id)
                    if reason:
                        finished = True
                        engine.core.cancel(seq)
                    for d in deltas:
                        yield d
                    if reason:
                        yield Finish(out.finish_reason(reason), self.usage())
                        return
                elif type(ev) is Done:
                    finished = True
                    for d in out.end():
                        yield d
                    out.completion_tokens = ev.completion_tokens
                    yield Finish(out.finish_reason(ev.reason), self.usage())
                    return
                elif type(ev) is Failed:
                    finished = True
                    if isinstance(ev.error, EngineOverloaded):
                        raise ev.error
                    raise RuntimeError(f"engine failure: {ev.error}") from ev.error
        finally:
            if not finished:  # the consumer went away (client disconnect): free the sequence
                engine.core.cancel(seq)
