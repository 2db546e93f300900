"""The model runner: turns a scheduled step into one llama_decode and samples what it must.

It batches, decodes and samples, nothing else: which tokens go in a step is the scheduler's
choice, and what the sampled tokens mean (stops, lengths, retiring) is its postprocess step's.
Images are decoded here too, through mtmd, between steps.
"""

from __future__ import annotations

import time
from typing import Callable

from .llama import Context, Model, Vision
from .scheduler import Step, Work
from .sequence import Sequence


class StepAborted(Exception):
    """The step's decode was stopped by its `abort` (nothing of it was kept)."""


class ModelRunner:
    def __init__(self, model: Model, ctx: Context, vision: Vision | None = None):
        self.model = model
        self.ctx = ctx
        self.vision = vision

    def execute(self, step: Step, abort: Callable[[], bool] | None = None) -> tuple[list[tuple[Sequence, int]], float]:
        """Decode the step's tokens in one batch and sample each sequence that needs a token (a
        sequence with a draft: each position in turn, up to the first the sampler disagrees with,
        and its KV cells past what was right are dropped). Returns (sequence, token) in the step's
        order and the seconds llama_decode took; raises StepAborted if `abort` stopped the decode."""
        ctx = self.ctx
        ctx.clear_batch()
        add = ctx.add
        rows: list[tuple[Work, int]] = []  # a sampled work and the batch index of its first sampled token
        for w in step.work:
            slot, pos = w.seq.slot, w.start
            last = len(w.tokens) - 1
            first = last - w.draft
            for i, tok in enumerate(w.tokens):
                idx = add(tok, pos + i, slot, w.sample and i >= first)
            if w.sample:
                rows.append((w, idx - w.draft))
        t0 = time.perf_counter()
        if not ctx.decode(abort):
            raise StepAborted
        seconds = time.perf_counter() - t0
        if not rows:
            return [], seconds
        n_outputs = sum(w.draft + 1 for w, _ in rows)
        logits = ctx.outputs(n_outputs)  # the batch asks for logits exactly at these rows, in order
        sample = self._sample
        out: list[tuple[Sequence, int]] = []
        k = 0
        for w, idx in rows:
            seq = w.seq
            if not w.draft:
                out.append((seq, sample(seq, idx, logits[k])))
                k += 1
                continue
            is_eog = self.model.is_eog
            for i in range(w.draft + 1):
                token = sample(seq, idx + i, logits[k + i])
                out.append((seq, token))
                if i == w.draft or token != w.tokens[i + 1] or is_eog(token):
                    break
            w.accepted = i + 1
            k += w.draft + 1
            if w.accepted <= w.draft:  # the cells of the draft's wrong guesses
                ctx.forget(seq.slot, w.start + w.accepted)
        return out, seconds

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
