"""The embedded engine: llama.cpp in this process.

Async side of the engine: renders the chat template, tokenizes, hands a `Sequence` to the `Runner`
thread, and turns the tokens it sends back into deltas (UTF-8 assembly, stop sequences, usage).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import AsyncIterator

from ...chat.template import ChatTemplate
from ...chat.text_stream import StopMatcher, Utf8Stream
from ...config import DeploymentConfig
from ..protocol import ChatOptions, Conversation, Delta, EngineOverloaded, Finish, PromptTooLong, TextDelta, Usage
from .llama import Context, Model, Sampler
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

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self.runner.start()

    def _load(self) -> None:
        d = self.deployment
        path = resolve_weights(d.model, self.models_dir)
        log.info("deployment %s: loading %s", d.name, path)
        model = Model(str(path))
        if d.chat_template:
            source = Path(d.chat_template).expanduser().read_text()
        else:
            source = model.chat_template()
            if not source:
                raise ValueError(f"deployment {d.name}: {path.name} has no chat template; set chat_template")
        self.template = ChatTemplate(
            source, bos_token=model.token_text(model.bos_id), eos_token=model.token_text(model.eos_id)
        )
        ctx = Context(model, n_ctx_seq=d.context_length, n_seq=d.max_sequences, n_batch=d.batch_tokens,
                      threads=d.threads)
        cache = None
        if d.prefix_cache_mb > 0:
            cache = PrefixCache(d.prefix_cache_mb * 1024 * 1024, max(1, d.prefix_cache_min_tokens))
        max_waiting = d.max_waiting if d.max_waiting is not None else d.max_sequences * MAX_WAITING_PER_SLOT
        self.model = model
        self.runner = Runner(model, ctx, max_waiting=max_waiting, cache=cache)

    async def close(self) -> None:
        if self.runner:
            await asyncio.to_thread(self.runner.stop)
            self.runner.ctx.close()
        if self.model:
            self.model.close()

    def stats(self) -> dict:
        return self.runner.stats() if self.runner else {"loading": True}

    # -- prompt ---------------------------------------------------------------------------------

    def render(self, conversation: Conversation, options: ChatOptions) -> str:
        messages = []
        for m in conversation.messages:
            m = dict(m)
            m["content"] = text_of(m.get("content"))
            messages.append(m)
        return self.template.render(messages, tools=conversation.tools, enable_thinking=options.thinking)

    def tokenize_prompt(self, text: str) -> list[int]:
        model = self.model
        add_bos = model.add_bos and not text.startswith(self.template.bos_token or "\0")
        return model.tokenize(text, add_special=add_bos, parse_special=True)

    # -- generation -----------------------------------------------------------------------------

    async def chat(self, conversation: Conversation, options: ChatOptions) -> AsyncIterator[Delta]:
        prompt = self.tokenize_prompt(self.render(conversation, options))
        limit = self.runner.ctx.n_ctx_seq
        if len(prompt) >= limit:
            raise PromptTooLong(len(prompt), limit - 1)
        max_new = limit - len(prompt)
        for bound in (options.max_tokens, options.max_completion_tokens):
            if bound is not None:
                max_new = min(max_new, bound)

        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        seq = Sequence(
            prompt=prompt,
            max_new_tokens=max_new,
            sampler=Sampler(temperature=options.temperature, top_p=options.top_p, seed=options.seed),
            emit=lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev),
        )
        self.runner.submit(seq)
        utf8 = Utf8Stream()
        stops = StopMatcher(options.stop)
        piece = self.model.piece
        received = 0
        finished = False
        try:
            while True:
                ev = await events.get()
                if type(ev) is Token:
                    received += 1
                    text = stops.feed(utf8.feed(piece(ev.id)))
                    if text:
                        yield TextDelta(text)
                    if stops.stopped:
                        finished = True
                        self.runner.cancel(seq)
                        yield Finish("stop", Usage(prompt_tokens=len(prompt), completion_tokens=received,
                                                   cached_tokens=seq.n_cached))
                        return
                elif type(ev) is Done:
                    finished = True
                    text = stops.feed(utf8.flush())
                    text += stops.flush()
                    if text:
                        yield TextDelta(text)
                    yield Finish(ev.reason, Usage(prompt_tokens=ev.prompt_tokens, completion_tokens=ev.completion_tokens,
                                                  cached_tokens=ev.cached_tokens))
                    return
                elif type(ev) is Failed:
                    finished = True
                    if isinstance(ev.error, EngineOverloaded):
                        raise ev.error
                    raise RuntimeError(f"engine failure: {ev.error}") from ev.error
        finally:
            if not finished:  # the consumer went away (client disconnect): free the sequence
                self.runner.cancel(seq)
