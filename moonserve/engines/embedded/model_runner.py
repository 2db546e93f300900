"""The model runner: turns a scheduled step into one llama_decode and samples what it must.

It batches, decodes and samples, nothing else: which tokens go in a step is the scheduler's
choice, and what the sampled tokens mean (stops, lengths, retiring) is its postprocess step's.
Images are decoded here too, through mtmd, between steps.
"""

from __future__ import annotations

import queue
import threading
import time

from .llama import Context, Model, Vision
from .scheduler import Step
from .sequence import Sequence


class ModelRunner:
    def __init__(self, model: Model, ctx: Context, vision: Vision | None = None, sampling_threads: int = 2):
        self.model = model
        self.ctx = ctx
        self.vision = vision
        # Sampling is llama.cpp's CPU sampler, ~0.26 ms a row for a 49k vocabulary, one row at a
        # time. With several rows a helper thread samples every other one (llama.cpp releases the
        # GIL): measured with 8 streams on 2 cores, +10% tokens/s and TTFT p50 0.87 -> 0.77 s.
        self._helper = _SamplingHelper(self._sample) if sampling_threads > 1 else None

    def execute(self, step: Step) -> tuple[list[tuple[Sequence, int]], float]:
        """Decode the step's tokens in one batch and sample each sequence that needs a token.
        Returns (sequence, token) in the step's order and the seconds llama_decode took."""
        ctx = self.ctx
        ctx.clear_batch()
        add = ctx.add
        rows: list[tuple[Sequence, int]] = []
        for w in step.work:
            slot, pos = w.seq.slot, w.start
            last = len(w.tokens) - 1
            for i, tok in enumerate(w.tokens):
                idx = add(tok, pos + i, slot, w.sample and i == last)
            if w.sample:
                rows.append((w.seq, idx))
        t0 = time.perf_counter()
        ctx.decode()
        seconds = time.perf_counter() - t0
        if self._helper is None or len(rows) < 2:
            r = [(seq, self._sample(seq, idx)) for seq, idx in rows]
        else:
            ctx.logits(rows[0][1])  # llama.cpp reorders its outputs on the first read: here, once
            theirs = rows[1::2]
            self._helper.start(theirs)
            try:
                mine = [self._sample(seq, idx) for seq, idx in rows[0::2]]
            finally:
                other = self._helper.wait()  # always collected: the next step must not read it
            tokens = [0] * len(rows)
            tokens[0::2], tokens[1::2] = mine, other
            r = [(seq, tok) for (seq, _), tok in zip(rows, tokens)]
        return r, seconds

    def _sample(self, seq: Sequence, idx: int) -> int:
        model, ctx = self.model, self.ctx
        token = seq.sampler.sample(ctx, idx)
        if seq.switch_at_end and model.is_eog(token):  # the first sampler's grammar is complete
            seq.switch_sampler()
            ctx.forbid(idx, model.eog_ids)  # what follows may not end before it begins
            token = seq.sampler.sample(ctx, idx)  # the same logits, the next sampler's draw
        if seq.switch_after is not None and not model.is_eog(token):
            seq.saw(model.piece(token))
        return token

    def close(self) -> None:
        if self._helper is not None:
            self._helper.stop()

    def decode_images(self, running: list[Sequence]) -> int:
        """Sequences whose prefill has reached an image: mtmd encodes it and decodes its
        embeddings into the sequence (a decode of its own). Returns the prompt tokens computed."""
        computed = 0
        for seq in running:
            while seq.prefilling and seq.n_computed in seq.images:
                start = seq.n_computed
                seq.n_computed = self.vision.decode_image(self.ctx, seq.images[start], start, seq.slot)
                computed += seq.n_computed - start
        return computed


class _SamplingHelper:
    """A thread that samples the rows it is handed, while the engine thread samples the others."""

    def __init__(self, sample):
        self._sample = sample
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="moonserve-sampling", daemon=True).start()

    def start(self, rows: list) -> None:
        self._jobs.put(rows)

    def wait(self) -> list[int]:
        result = self._results.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def stop(self) -> None:
        self._jobs.put(None)

    def _loop(self) -> None:
        while (rows := self._jobs.get()) is not None:
            try:
                self._results.put([self._sample(seq, idx) for seq, idx in rows])
            except BaseException as exc:  # handed to the engine thread, which fails the step
                self._results.put(exc)
