"""The engine loop: one thread owns the llama.cpp context and runs decode steps.

The async side never touches llama.cpp. It sends messages (`submit`, `cancel`) through a queue and
receives `Token`/`Done`/`Failed` events through each sequence's `emit`. Cancellation is a message, so
a sequence is only ever freed by this thread, between steps.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from .llama import Context, Model
from .scheduler import Scheduler
from .sequence import Done, Failed, Sequence, Token

log = logging.getLogger("moonserve.engine")


@dataclass(slots=True)
class _Cancel:
    seq: Sequence


_STOP = object()


class Runner:
    def __init__(self, model: Model, ctx: Context, *, max_waiting: int):
        self.model = model
        self.ctx = ctx
        self.scheduler = Scheduler(ctx.n_seq, max_waiting)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="moonserve-engine", daemon=True)
        # counters, read by /health and /metrics (plain ints: torn reads are harmless)
        self.tokens_generated = 0
        self.prompt_tokens_computed = 0
        self.steps = 0

    # -- called from the async side -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        self._inbox.put(seq)

    def cancel(self, seq: Sequence) -> None:
        self._inbox.put(_Cancel(seq))

    def stop(self) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout=30)

    def stats(self) -> dict:
        s = self.scheduler
        return {
            "running": len(s.running),
            "waiting": len(s.waiting),
            "slots": self.ctx.n_seq,
            "context_length": self.ctx.n_ctx_seq,
            "tokens_generated": self.tokens_generated,
            "prompt_tokens_computed": self.prompt_tokens_computed,
        }

    # -- the loop (engine thread) ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
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
                msg.emit(Failed(exc))
        elif isinstance(msg, _Cancel):
            if not msg.seq.finished:
                self._finish(msg.seq, "cancelled")

    def _step(self) -> None:
        work = self.scheduler.schedule(self.ctx.n_batch)
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
        ctx.decode()
        self.steps += 1

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
            seq.n_generated += 1
            self.tokens_generated += 1
            if model.is_eog(token):
                self._finish(seq, "stop")
                continue
            seq.emit(Token(token))
            if seq.n_generated >= seq.max_new_tokens or seq.n_computed >= ctx.n_ctx_seq:
                self._finish(seq, "length")
            else:
                seq.last_token = token

    def _finish(self, seq: Sequence, reason: str) -> None:
        seq.finished = True
        if seq.slot is not None:
            self.ctx.forget(seq.slot)
        self.scheduler.remove(seq)
        seq.sampler.close()
        seq.emit(Done(reason, len(seq.prompt), seq.n_generated))

    def _fail_all(self, exc: Exception) -> None:
        for seq in list(self.scheduler.running) + list(self.scheduler.waiting):
            seq.finished = True
            if seq.slot is not None:
                self.ctx.forget(seq.slot)
            self.scheduler.remove(seq)
            seq.sampler.close()
            seq.emit(Failed(exc))

