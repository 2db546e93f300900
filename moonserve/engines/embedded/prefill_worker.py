"""Long prompts prefilled beside the decode loop, in a llama.cpp context of their own.

On a CPU, one decoding stream gains little from a second core (it is bound by memory, not
arithmetic), while a prompt's prefill is arithmetic. So while sequences are generating, the engine
hands a long prompt to this worker: it computes the prompt's KV cells in a one-sequence context on
its own threads, at the same time as the engine loop keeps decoding on the rest, and hands the cells
back (llama.cpp's sequence state, the same bytes the prefix cache keeps), which the loop loads into
the sequence's slot. The prompt's last token is left to the loop, which samples from it.

Measured on 2 cores (SmolLM2-135M, a 2,000-token prompt): a decoding stream's steps went from
6.6 ms alone to ~10 ms beside the worker, and the prompt took 12.6 s; paced into the decode loop
instead, the stream's steps were 19-22 ms and the prompt 35-41 s.

With deterministic kernels a sequence's tokens are computed alike either way (the chunking and the
number of threads only split the work), so its results are bit-identical to a prefill in the loop.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable

from .llama import Context, LlamaError
from .sequence import Sequence

log = logging.getLogger("moonserve.engine")

@dataclass(eq=False)
class PrefillJob:
    seq: Sequence
    start: int  # the first position to compute (cells before it come in `state`)
    end: int  # compute up to here, exclusive
    state: object | None = None  # the sequence's KV cells up to `start`, if any
    size: int = 0
    cancelled: bool = False  # set by the engine loop: the worker stops within milliseconds


@dataclass(eq=False)
class PrefillDone:
    """The worker's answer, delivered to the engine loop's inbox."""

    job: PrefillJob
    state: object | None  # the sequence's KV cells up to job.end; None if cancelled or failed
    size: int = 0
    error: Exception | None = None


_STOP = object()


class PrefillWorker:
    """Owns its context and thread. The engine loop hands it jobs and a stop by message, and
    cancels a job by its flag (the decode in progress stops within milliseconds, see
    Context.decode); it answers each job with a `PrefillDone` in the loop's inbox."""

    def __init__(self, ctx: Context, deliver: Callable[[PrefillDone], None]):
        self.ctx = ctx  # a one-sequence context on the same model, with the worker's threads
        self._deliver = deliver  # into the engine loop's inbox
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="moonserve-prefill", daemon=True)
        self.job: PrefillJob | None = None  # set and cleared by the engine loop only
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._inbox.put(_STOP)
        self._thread.join(timeout=30)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def submit(self, job: PrefillJob) -> None:
        self.job = job
        self._inbox.put(job)

    def cancel(self, job: PrefillJob) -> None:
        job.cancelled = True

    # -- the worker thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            msg = self._inbox.get()
            if msg is _STOP:
                return
            self._run(msg)

    def _run(self, job: PrefillJob) -> None:
        """Compute one job, in whole batches, and answer it."""
        ctx = self.ctx
        abort = lambda: job.cancelled or self._stopping  # noqa: E731
        completed = False
        try:
            if job.state is not None and not ctx.restore_state(job.state, job.size, 0):
                raise LlamaError("llama.cpp refused the sequence's state")
            tokens = job.seq.prompt
            for pos in range(job.start, job.end, ctx.n_batch):
                ctx.clear_batch()
                for i, tok in enumerate(tokens[pos : min(job.end, pos + ctx.n_batch)]):
                    ctx.add(tok, pos + i, 0, False)
                if abort() or not ctx.decode(abort):
                    break
            else:
                completed = True
            done = PrefillDone(job, *ctx.save_state(0)) if completed else PrefillDone(job, None)
        except Exception as exc:
            log.exception("prefill worker: a prompt failed")
            done = PrefillDone(job, None, error=exc)
        finally:
            ctx.forget(0)
        self._deliver(done)
