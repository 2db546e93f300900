"""How many prompt tokens to prefill in a step while other sequences are generating.

A step that carries prefill is slower than a decode-only step, and every running stream waits for
it. The pacer measures both (moving averages of decode-only step time and of the extra time per
prefill token, which grows with the prompt's position) and sizes the prefill chunk so that a step
takes at most `max_slowdown` times a decode-only step. With nothing generating, prefill takes the
whole batch.
"""

from __future__ import annotations

# Moving averages follow a rise fast and a fall slowly: the cost per prefill token grows with the
# prompt's position (attention), and overshooting stalls every running stream.
RISE, FALL = 0.5, 0.1


class PrefillPacer:
    def __init__(self, max_slowdown: float, max_chunk: int, first_chunk: int = 1):
        self.max_slowdown = max_slowdown
        self.max_chunk = max_chunk
        self.decode_step = None  # seconds, decode-only steps
        self.per_prefill_token = None  # extra seconds per prefill token in a mixed step
        self.chunk = first_chunk

    def observe(self, seconds: float, decode_tokens: int, prefill_tokens: int) -> None:
        if prefill_tokens == 0:
            if decode_tokens:
                self.decode_step = _ema(self.decode_step, seconds)
        elif decode_tokens and self.decode_step is not None:
            extra = max(seconds - self.decode_step, 1e-6) / prefill_tokens
            self.per_prefill_token = _ema(self.per_prefill_token, extra)
        if self.decode_step is not None and self.per_prefill_token is not None:
            allowed = (self.max_slowdown - 1.0) * self.decode_step
            self.chunk = max(1, min(self.max_chunk, int(allowed / self.per_prefill_token)))


def _ema(old: float | None, new: float) -> float:
    if old is None:
        return new
    return old + (RISE if new > old else FALL) * (new - old)
