"""The engine core: one thread owns the llama.cpp context and runs steps.

The async side never touches llama.cpp. It sends messages (`submit`, `cancel`) through the inbox
and receives `Token`/`Done`/`Failed` events in each sequence's queue. Cancellation is a message, so
a sequence is only ever freed by this thread, between steps.

A step: admit waiting sequences into free slots (the prefix cache restores what it holds of their
prompts), let the scheduler pick the step's work, have the model runner decode and sample it, let
the scheduler's postprocess say which tokens go out and who is done, and retire those (the prefix
cache saves their KV state). While sequences generate, a long prompt goes to the prefill worker (its
own context and threads, see prefill_worker.py) and comes back as KV state loaded into its slot.

Output is handed over in one go, just before the next llama_decode (as vLLM overlaps output
processing with the next step): the consumers' event loop then renders the tokens while this thread
decodes with the GIL released, instead of both wanting the GIL at the start of the step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .llama import Context, LlamaError, Model, Vision, restream
from .model_runner import ModelRunner, StepAborted
from .pacing import PrefillPacer
from .prefill_worker import PrefillDone, PrefillJob, PrefillWorker
from .prefix_cache import PrefixCache
from .scheduler import Scheduler
from .sequence import Done, Failed, Sequence, Token

log = logging.getLogger("moonserve.engine")


@dataclass(slots=True)
class _Cancel:
    seq: Sequence


_STOP = object()
# A request waits for a prompt in flight that shares at least this many tokens it would otherwise
# compute again (computing them once and restoring them costs it that prefill's remaining time; on a
# CPU, computing them beside it would cost as much, plus the KV memory).
SHARED_PREFIX_HOLD_TOKENS = 256


class Outbox:
    """Events for the sequences' consumers, delivered in one call per event loop."""

    def __init__(self):
        self._pending: list[tuple[Sequence, object]] = []

    def put(self, seq: Sequence, event: object) -> None:
        self._pending.append((seq, event))

    def flush(self) -> None:
        if not self._pending:
            return
        by_loop: dict = {}
        for seq, event in self._pending:
            if seq.events is not None:
                by_loop.setdefault(seq.loop, []).append((seq.events, event))
        self._pending = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # that event loop is closed: nobody is listening
                pass


def _put_all(items: list) -> None:
    for events, event in items:
        events.put_nowait(event)


class EngineCore:
    def __init__(self, model: Model, ctx: Context, *, max_waiting: int, cache: PrefixCache | None,
                 max_decode_slowdown: float, unpaced_tokens: int = 64, vision: Vision | None = None,
                 prefill_ctx: Context | None = None):
        self.model = model
        self.ctx = ctx
        self.cache = cache
        self.runner = ModelRunner(model, ctx, vision)
        self.pacer = PrefillPacer(max_decode_slowdown, ctx.n_batch)
        self.scheduler = Scheduler(ctx.n_seq, max_waiting, unpaced_tokens,
                                   hold_tokens=SHARED_PREFIX_HOLD_TOKENS if cache is not None else None,
                                   n_ctx_seq=ctx.n_ctx_seq)
        self.outbox = Outbox()
        self._stopping = False
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="moonserve-engine", daemon=True)
        self.prefill = PrefillWorker(prefill_ctx, self._inbox.put) if prefill_ctx is not None else None
        self.threads = ctx.threads  # all of them; the prefill worker borrows some while it works
        # counters, read by /health and /metrics (plain numbers: torn reads are harmless)
        self.tokens_generated = 0
        self.prompt_tokens_computed = 0
        self.prefills_offloaded = 0
        self.shared_prefills = 0  # prompts computed once for several requests that arrived together
        self.draft_tokens = 0  # speculation: tokens drafted from the requests' own context, and those right
        self.draft_tokens_accepted = 0
        self.tokens_per_second = 0.0  # generation rate, smoothed over about a second
        self._rate_mark = (time.monotonic(), 0)
        # a decode step's llama_decode time and the Python around it (scheduling, batch building,
        # sampling, bookkeeping), exponential averages in seconds
        self.decode_seconds = 0.0
        self.step_overhead_seconds = 0.0

    # -- called from the async side -----------------------------------------------------------

    def start(self) -> None:
        if self.prefill is not None:
            self.prefill.start()
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        self._inbox.put(seq)

    def cancel(self, seq: Sequence) -> None:
        seq.abandoned = True
        self._inbox.put(_Cancel(seq))

    def stop(self) -> None:
        self._stopping = True
        self._inbox.put(_STOP)
        self._thread.join(timeout=30)
        if self.prefill is not None:
            self.prefill.stop()

    def stats(self) -> dict:
        s = self.scheduler
        running = list(s.running)
        cache = self.cache
        return {
            "running": len(running),
            "waiting": len(s.waiting),
            "slots": self.ctx.n_seq,
            "context_length": self.ctx.n_ctx_seq,
            "tokens_generated": self.tokens_generated,
            "prompt_tokens_computed": self.prompt_tokens_computed,
            "prefills_offloaded": self.prefills_offloaded,
            "shared_prefills": self.shared_prefills,
            "draft_tokens": self.draft_tokens,
            "draft_tokens_accepted": self.draft_tokens_accepted,
            "tokens_per_second": round(self.tokens_per_second, 2),
            "decode_step_ms": round(self.decode_seconds * 1e3, 3),
            "step_overhead_us": round(self.step_overhead_seconds * 1e6, 1),
            "kv_cells_used": sum(q.n_computed for q in running),
            "kv_cells_total": self.ctx.n_seq * self.ctx.n_ctx_seq,
            "cache_entries": len(cache) if cache else 0,
            "cache_bytes": cache.nbytes if cache else 0,
            "cache_budget_bytes": cache.budget_bytes if cache else 0,
            "cache_hits": cache.hits if cache else 0,
            "cache_hit_tokens": cache.hit_tokens if cache else 0,
            "cache_evictions": cache.evictions if cache else 0,
        }

    # -- the loop (engine thread) ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._balance_threads()
            # Idle: hand over what is left and block until something arrives. Busy: take what is
            # there and keep stepping.
            if self.scheduler.has_work():
                msg = self._next_nowait()
            else:
                self.outbox.flush()
                msg = self._inbox.get()
            while msg is not None:
                if msg is _STOP:
                    self._fail_all(RuntimeError("engine stopped"))
                    self.outbox.flush()
                    return
                self._handle(msg)
                msg = self._next_nowait()
            if self.scheduler.has_work():
                try:
                    self._step()
                except Exception as exc:  # a llama.cpp failure: fail what ran, keep serving
                    log.exception("decode step failed")
                    self._fail_all(exc)
            else:
                self.tokens_per_second = 0.0

    def _next_nowait(self):
        try:
            return self._inbox.get_nowait()
        except queue.Empty:
            return None

    def _handle(self, msg) -> None:
        if isinstance(msg, Sequence):
            try:
                self.scheduler.add(msg)
            except Exception as exc:
                msg.finished = True
                msg.close_samplers()
                self.outbox.put(msg, Failed(exc))
        elif isinstance(msg, _Cancel):
            if not msg.seq.finished:
                self._finish(msg.seq, "cancelled")
        elif isinstance(msg, PrefillDone):
            self._prefilled(msg)

    def _step(self) -> None:
        started = time.perf_counter()
        cache = self.cache
        self.scheduler.admit(restore=(lambda seq: cache.restore(seq, self.ctx)) if cache is not None else None)
        if self.runner.vision is not None:
            self.prompt_tokens_computed += self.runner.decode_images(self.scheduler.running)
        self._offload()
        step = self.scheduler.schedule(self.ctx.n_batch, self.pacer.chunk)
        if not step.work:
            self.outbox.flush()
            return
        n_prefill = step.prefill_tokens
        self.outbox.flush()  # the last step's tokens: rendered while this one decodes
        try:
            sampled, seconds = self.runner.execute(step, self._abort_prefill(step) if n_prefill else None)
        except StepAborted:  # its cells are gone: the cancellations waiting in the inbox end them
            return
        if n_prefill == 0:
            self.pacer.observe_decode(seconds)
            self.decode_seconds += 0.05 * (seconds - self.decode_seconds)
        elif step.paced:
            self.pacer.observe_prefill(seconds, n_prefill)
        self.prompt_tokens_computed += n_prefill
        self.tokens_generated += len(sampled)
        if n_prefill == 0:
            for w in step.work:
                if w.draft:
                    self.draft_tokens += w.draft
                    self.draft_tokens_accepted += w.accepted - 1
                    w.seq.lookup.verified(w.draft, w.accepted - 1)
        out, done = self.scheduler.postprocess(step, sampled, is_eog=self.model.is_eog, n_ctx_seq=self.ctx.n_ctx_seq)
        if n_prefill:
            self._share_prefixes(step)
        put = self.outbox.put
        for seq, token in out:
            put(seq, Token(token))
        for seq, reason in done:
            self._finish(seq, reason)
        if n_prefill == 0:
            overhead = time.perf_counter() - started - seconds
            self.step_overhead_seconds += 0.05 * (overhead - self.step_overhead_seconds)
        self._update_rate()

    def _abort_prefill(self, step) -> Callable[[], bool]:
        """A prefill step (up to a whole batch of a long prompt, seconds deep in a long context)
        stops as soon as nobody wants it: every sequence in it abandoned, or the engine stopping."""
        seqs = [w.seq for w in step.work]
        return lambda: self._stopping or all(seq.abandoned for seq in seqs)

    def _share_prefixes(self, step) -> None:
        """A prompt that others wait for (a shared prefix in flight, see scheduler.py), once
        prefilled, goes into the prefix cache at once, for them to restore."""
        for w in step.work:
            seq = w.seq
            if seq.leads and not seq.prefilling:
                seq.leads = False
                self.cache.save(seq, self.ctx)
                self.shared_prefills += 1

    def _update_rate(self) -> None:
        now = time.monotonic()
        t0, n0 = self._rate_mark
        if now - t0 >= 1.0:
            self.tokens_per_second = (self.tokens_generated - n0) / (now - t0)
            self._rate_mark = (now, self.tokens_generated)

    # -- the prefill worker ------------------------------------------------------------------------

    def _offload(self) -> None:
        """While sequences generate, hand the oldest long prompt to the prefill worker."""
        worker = self.prefill
        if worker is None or worker.busy or not self.scheduler.generating:
            return
        for seq in self.scheduler.running:
            end = len(seq.prompt) - 1  # the last token is computed here, where it is sampled
            if (seq.prefilling and not seq.offloaded and not seq.images
                    and end - seq.n_computed > self.scheduler.unpaced_tokens):
                break
        else:
            return
        state, size = None, 0
        if seq.n_computed:  # a prefix restored from the cache: the worker starts from it
            try:
                state, size = restream(*self.ctx.save_state(seq.slot), 1)
            except LlamaError:
                log.exception("prefill worker: could not hand over a cached prefix")
                return
        seq.offloaded = True
        worker.submit(PrefillJob(seq, seq.n_computed, end, state, size))
        self._balance_threads()

    def _prefilled(self, done: PrefillDone) -> None:
        job, seq = done.job, done.job.seq
        self.prefill.job = None
        seq.offloaded = False
        self._balance_threads()
        if seq.finished or seq.slot is None:
            return  # cancelled meanwhile
        if done.error is not None:
            self._fail(seq, done.error)
            return
        if done.state is None:
            return  # the worker was stopped: the loop computes the prompt itself
        self.ctx.forget(seq.slot)
        try:  # the worker's context has one KV stream, this one one per slot
            restored = self.ctx.restore_state(*restream(done.state, done.size, self.ctx.n_seq), seq.slot)
        except LlamaError:
            restored = False
        if restored:
            seq.n_computed = job.end
            self.prompt_tokens_computed += job.end - job.start
            self.prefills_offloaded += 1
        else:  # compute the whole prompt here instead
            log.warning("prefill worker: llama.cpp refused the state; computing the prompt in the loop")
            self.ctx.forget(seq.slot)
            seq.n_computed = seq.n_cached = 0

    def _balance_threads(self) -> None:
        """While the worker computes, the loop decodes on the threads it leaves free. The worker
        never takes more than its own, even when the loop is idle: once it had run on two threads
        (of two cores), the loop's steps took twice as long for good, measured. libgomp, which runs
        ggml's threads, appears to stop spinning once it manages more threads than there are cores."""
        worker = self.prefill
        if worker is not None:
            self.ctx.set_threads(max(1, self.threads - worker.ctx.threads) if worker.busy else self.threads)

    # -- retiring ---------------------------------------------------------------------------------

    def _finish(self, seq: Sequence, reason: str) -> None:
        seq.finished = True
        self._cancel_offload(seq)
        if seq.slot is not None:
            if self.cache is not None:
                self.cache.save(seq, self.ctx)
            self.ctx.forget(seq.slot)
        self.scheduler.remove(seq)
        seq.close_samplers()
        self.outbox.put(seq, Done(reason, len(seq.prompt), seq.n_generated, seq.n_cached))

    def _fail_all(self, exc: Exception) -> None:
        for seq in list(self.scheduler.running) + list(self.scheduler.waiting):
            self._fail(seq, exc)

    def _fail(self, seq: Sequence, exc: Exception) -> None:
        seq.finished = True
        self._cancel_offload(seq)
        if seq.slot is not None:
            self.ctx.forget(seq.slot)
        self.scheduler.remove(seq)
        seq.close_samplers()
        self.outbox.put(seq, Failed(exc))

    def _cancel_offload(self, seq: Sequence) -> None:
        worker = self.prefill
        if seq.offloaded and worker is not None and worker.job is not None and worker.job.seq is seq:
            worker.cancel(worker.job)  # the worker stops at its next chunk and reports back
