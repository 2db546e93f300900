"""The engine loop: one thread owns the llama.cpp context and runs decode steps.

The async side never touches llama.cpp. It sends messages (`submit`, `cancel`) through a queue and
receives `Token`/`Done`/`Failed` events through each sequence's `emit`. Cancellation is a message, so
a sequence is only ever freed by this thread, between steps.

A step: admit waiting sequences into free slots (restoring a cached prefix where one matches), build
one batch with a token for every generating sequence plus prompt chunks, `llama_decode` it once,
sample each sequence that needs a token, and retire the finished ones (saving their KV state to
the prefix cache). While sequences generate, a long prompt goes to the prefill worker (its own
context and threads, see prefill_worker.py) and comes back as KV state loaded into its slot.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from .llama import Context, LlamaError, Model, Vision, restream
from .pacing import PrefillPacer
from .prefill_worker import PrefillDone, PrefillJob, PrefillWorker
from .prefix_cache import Entry, PrefixCache
from .scheduler import Scheduler
from .sequence import Done, Failed, Sequence, Token

log = logging.getLogger("moonserve.engine")


@dataclass(slots=True)
class _Cancel:
    seq: Sequence


_STOP = object()


class Runner:
    def __init__(self, model: Model, ctx: Context, *, max_waiting: int, cache: PrefixCache | None,
                 max_decode_slowdown: float, unpaced_tokens: int = 64, vision: Vision | None = None,
                 prefill_ctx: Context | None = None):
        self.model = model
        self.vision = vision
        self.ctx = ctx
        self.cache = cache
        self.pacer = PrefillPacer(max_decode_slowdown, ctx.n_batch)
        self.scheduler = Scheduler(ctx.n_seq, max_waiting, unpaced_tokens)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="moonserve-engine", daemon=True)
        self.prefill = PrefillWorker(prefill_ctx, self._inbox.put) if prefill_ctx is not None else None
        self.threads = ctx.threads  # all of them; the prefill worker borrows some while it works
        # counters, read by /health and /metrics (plain numbers: torn reads are harmless)
        self.tokens_generated = 0
        self.prompt_tokens_computed = 0
        self.prefills_offloaded = 0
        self.tokens_per_second = 0.0  # generation rate, smoothed over about a second
        self._rate_mark = (time.monotonic(), 0)

    # -- called from the async side -----------------------------------------------------------

    def start(self) -> None:
        if self.prefill is not None:
            self.prefill.start()
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        self._inbox.put(seq)

    def cancel(self, seq: Sequence) -> None:
        self._inbox.put(_Cancel(seq))

    def stop(self) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout=30)
        if self.prefill is not None:
            self.prefill.stop()

    def stats(self) -> dict:
        s = self.scheduler
        running = list(s.running)
        kv_cells = self.ctx.n_seq * self.ctx.n_ctx_seq
        cache = self.cache
        return {
            "running": len(running),
            "waiting": len(s.waiting),
            "slots": self.ctx.n_seq,
            "context_length": self.ctx.n_ctx_seq,
            "tokens_generated": self.tokens_generated,
            "prompt_tokens_computed": self.prompt_tokens_computed,
            "prefills_offloaded": self.prefills_offloaded,
            "tokens_per_second": round(self.tokens_per_second, 2),
            "kv_cells_used": sum(q.n_computed for q in running),
            "kv_cells_total": kv_cells,
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
            # Idle: block until something arrives. Busy: take what is there and keep stepping.
            msg = self._inbox.get() if not self.scheduler.has_work() else self._next_nowait()
            while msg is not None:
                if msg is _STOP:
                    self._fail_all(RuntimeError("engine stopped"))
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
                msg.emit(Failed(exc))
        elif isinstance(msg, _Cancel):
            if not msg.seq.finished:
                self._finish(msg.seq, "cancelled")
        elif isinstance(msg, PrefillDone):
            self._prefilled(msg)

    def _step(self) -> None:
        for seq in self.scheduler.admit():
            self._restore_prefix(seq)
        if self.vision is not None:
            self._decode_images()
        self._offload()
        step = self.scheduler.schedule(self.ctx.n_batch, self.pacer.chunk)
        work = step.work
        if not work:
            return
        ctx = self.ctx
        ctx.clear_batch()
        sample_at: list[tuple[Sequence, int]] = []
        for w in work:
            slot = w.seq.slot
            last = len(w.tokens) - 1
            for i, tok in enumerate(w.tokens):
                idx = ctx.add(tok, w.start + i, slot, w.sample and i == last)
            if w.sample:
                sample_at.append((w.seq, idx))
        t0 = time.perf_counter()
        ctx.decode()
        seconds = time.perf_counter() - t0
        n_prefill = step.prefill_tokens
        if n_prefill == 0:
            self.pacer.observe_decode(seconds)
        elif step.paced:
            self.pacer.observe_prefill(seconds, n_prefill)

        for w in work:
            seq = w.seq
            if seq.prefilling:
                seq.n_computed += len(w.tokens)
                self.prompt_tokens_computed += len(w.tokens)
            else:
                seq.n_computed += 1  # the previously sampled token is now in the KV cache

        model = self.model
        for seq, idx in sample_at:
            token = seq.sampler.sample(ctx, idx)
            if seq.switch_at_end and model.is_eog(token):  # the first sampler's grammar is complete
                self._switch_sampler(seq)
                ctx.forbid(idx, model.eog_ids)  # what follows may not end before it begins
                token = seq.sampler.sample(ctx, idx)  # the same logits, the next sampler's draw
            seq.generated.append(token)
            self.tokens_generated += 1
            if model.is_eog(token):
                self._finish(seq, "stop")
                continue
            seq.emit(Token(token))
            if seq.switch_after is not None:
                self._maybe_switch_sampler(seq, token)
            if seq.n_generated >= seq.max_new_tokens or seq.n_computed >= ctx.n_ctx_seq:
                self._finish(seq, "length")
            else:
                seq.last_token = token
        self._update_rate()

    def _update_rate(self) -> None:
        now = time.monotonic()
        t0, n0 = self._rate_mark
        if now - t0 >= 1.0:
            self.tokens_per_second = (self.tokens_generated - n0) / (now - t0)
            self._rate_mark = (now, self.tokens_generated)

    def _decode_images(self) -> None:
        """Sequences whose prefill has reached an image: mtmd encodes it and decodes its
        embeddings into the sequence (a decode of its own, between batch steps)."""
        for seq in self.scheduler.running:
            while seq.prefilling and seq.n_computed in seq.images:
                start = seq.n_computed
                seq.n_computed = self.vision.decode_image(self.ctx, seq.images[start], start, seq.slot)
                self.prompt_tokens_computed += seq.n_computed - start

    def _maybe_switch_sampler(self, seq: Sequence, token: int) -> None:
        seq.recent = (seq.recent + self.model.piece(token))[-64:]
        if seq.switch_after in seq.recent:
            self._switch_sampler(seq)

    @staticmethod
    def _switch_sampler(seq: Sequence) -> None:
        seq.sampler.close()
        seq.sampler, seq.later_sampler, seq.switch_after, seq.switch_at_end = seq.later_sampler, None, None, False

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

    # -- prefix cache -----------------------------------------------------------------------------

    def _restore_prefix(self, seq: Sequence) -> None:
        if self.cache is None:
            return
        found = self.cache.lookup(seq.prompt)
        if found is None:
            return
        entry, reuse = found
        while reuse > 0 and seq.prompt[reuse] < 0 and reuse not in seq.images:
            reuse -= 1  # never stop inside an image: back off to where it starts
        if reuse < self.cache.min_tokens:
            return
        if not self.ctx.restore_state(entry.state, entry.nbytes, seq.slot):
            self.ctx.forget(seq.slot)
            log.warning("prefix cache: llama.cpp refused a saved state; computing the prompt instead")
            return
        self.ctx.forget(seq.slot, reuse)
        seq.n_computed = seq.n_cached = reuse
        self.cache.record_hit(reuse)

    def _save_prefix(self, seq: Sequence) -> None:
        if self.cache is None or seq.slot is None:
            return
        tokens = seq.computed_tokens
        if not self.cache.wants(tokens):
            return
        try:
            state, size = self.ctx.save_state(seq.slot)
        except Exception:
            log.exception("prefix cache: could not save a sequence")
            return
        self.cache.insert(Entry(tokens, state, size))

    # -- retiring ---------------------------------------------------------------------------------

    def _finish(self, seq: Sequence, reason: str) -> None:
        seq.finished = True
        self._cancel_offload(seq)
        if seq.slot is not None:
            self._save_prefix(seq)
            self.ctx.forget(seq.slot)
        self.scheduler.remove(seq)
        seq.close_samplers()
        seq.emit(Done(reason, len(seq.prompt), seq.n_generated, seq.n_cached))

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
        seq.emit(Failed(exc))

    def _cancel_offload(self, seq: Sequence) -> None:
        if seq.offloaded and self.prefill is not None and self.prefill.job is not None:
            self.prefill.job.cancelled.set()  # the worker stops at its next chunk and reports back
