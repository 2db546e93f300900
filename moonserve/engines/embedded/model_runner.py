"""The model runner: turns a scheduled step into one llama_decode and samples what it must.

It batches, decodes and samples, nothing else: which tokens go in a step is the scheduler's
choice, and what the sampled tokens mean (stops, lengths, retiring) is its postprocess step's.
Images are decoded here too, through mtmd, between steps.
"""

from __future__ import annotations

import time

from .llama import Context, Model, Vision
from .scheduler import Step
from .sequence import Sequence


class ModelRunner:
    def __init__(self, model: Model, ctx: Context, vision: Vision | None = None):
        self.model = model
        self.ctx = ctx
        self.vision = vision

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
        if not rows:
            return [], seconds
        logits = ctx.outputs(len(rows))  # the batch asks for logits exactly at these rows, in order
        sample = self._sample
        return [(seq, sample(seq, idx, logits[k])) for k, (seq, idx) in enumerate(rows)], seconds

    def _sample(self, seq: Sequence, idx: int, row) -> int:
        model, ctx = self.model, self.ctx
        token = seq.sampler.sample(ctx, idx, row)
        if seq.switch_at_end and model.is_eog(token):  # the first sampler's grammar is complete
            seq.switch_sampler()
            ctx.forbid(idx, model.eog_ids)  # what follows may not end before it begins
            token = seq.sampler.sample(ctx, idx, row)  # the same logits, the next sampler's draw
        if seq.switch_after is not None and not model.is_eog(token):
            seq.saw(model.piece(token))
        return token

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
