"""How many prompt tokens a prefill step may take while other sequences are generating.

Decode steps and paced prefill steps alternate (see scheduler.py), so a running stream waits for one
of each between two tokens. The pacer keeps a prefill step within `(max_slowdown - 1)` decode steps,
which bounds the running streams' inter-token gaps to about `max_slowdown` times a decode step.

It predicts a step's time from the last few paced steps, as a fixed cost plus a cost per token (a
least-squares line through them: the per-token cost grows with the prompt's position, so only
recent steps count), and picks the largest chunk predicted to fit with a margin, so that it does
not probe past the bound and make a running stream wait. While the recent steps all had one size it
assumes no fixed cost, which over-estimates a larger chunk and never under-estimates it.
With nothing generating, prefill is not paced: a long prompt goes in whole batches. Such a step
takes seconds deep in a long context (SmolLM2 on 2 cores, 512 tokens: 2 s at the start, 9.8 s past
11,000 tokens), and smaller ones cost throughput there (the same 512 tokens as 128-token steps took
12.3 s); a client that leaves does not wait for it, as the step stops within milliseconds once
nobody wants it (Context.decode's abort).
"""

from __future__ import annotations

from collections import deque

# The decode-step average follows a fall fast and a rise slowly: the bound is a multiple of it, so
# a slow decode step (noise) must not let the next prefill steps grow.
RISE, FALL = 0.1, 0.5
MARGIN = 0.9  # aim a little under the bound: step times are noisy
HISTORY = 4


class PrefillPacer:
    def __init__(self, max_slowdown: float, max_chunk: int, first_chunk: int = 1):
        self.max_slowdown = max_slowdown
        self.max_chunk = max_chunk
        self.decode_step: float | None = None  # seconds, decode steps
        self.chunk = first_chunk
        self._steps: deque[tuple[int, float]] = deque(maxlen=HISTORY)  # (prompt tokens, seconds)

    @property
    def allowed(self) -> float | None:
        """Seconds a paced prefill step may take."""
        if self.decode_step is None:
            return None
        return (self.max_slowdown - 1.0) * self.decode_step

    def observe_decode(self, seconds: float) -> None:
        old = self.decode_step
        self.decode_step = seconds if old is None else old + (RISE if seconds > old else FALL) * (seconds - old)
        self._resize()

    def observe_prefill(self, seconds: float, tokens: int) -> None:
        """A paced prefill step of `tokens` prompt tokens took `seconds`."""
        if tokens > 0:
            self._steps.append((tokens, seconds))
            self._resize()

    def _resize(self) -> None:
        allowed = self.allowed
        if allowed is None or not self._steps:
            return
        fit = self._fit()
        if fit is not None:
            fixed, per_token = fit
            chunk = int((MARGIN * allowed - fixed) / per_token)
        else:  # one chunk size seen: no fixed cost assumed, so a larger chunk is over-estimated
            k, t = self._steps[-1]
            chunk = int(MARGIN * allowed / (t / k))
        self.chunk = max(1, min(self.max_chunk, chunk))

    def _fit(self) -> tuple[float, float] | None:
        """(fixed seconds, seconds per token) of a paced prefill step, if recent steps tell."""
        ks = [k for k, _ in self._steps]
        ts = [t for _, t in self._steps]
        n = len(ks)
        mk, mt = sum(ks) / n, sum(ts) / n
        var = sum((k - mk) ** 2 for k in ks)
        if var == 0:
            return None
        slope = sum((k - mk) * (t - mt) for k, t in zip(ks, ts)) / var
        fixed = mt - slope * mk
        if slope <= 0 or not 0 <= fixed <= min(ts):  # noise: fall back to no fixed cost
            return None
        return fixed, slope
