"""Who runs next. Pure bookkeeping: no llama.cpp calls, so it is testable on its own.

Each step is one llama_decode of at most `budget` tokens: first one token for every sequence that
is generating (so running streams keep flowing), then prompt chunks of sequences still prefilling.
While any sequence is generating, long prompts advance by at most `interactive_chunk` tokens a step
(sized by `pacing.PrefillPacer`), so admitting one slows running streams a little instead of
stalling them for seconds; prompts (or remainders) of at most `unpaced_tokens` go in whole.
New sequences join between steps as KV slots free up; past `max_waiting` a request is refused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..protocol import EngineOverloaded
from .sequence import Sequence


@dataclass(slots=True)
class Work:
    seq: Sequence
    tokens: list[int]
    start: int  # position of tokens[0]
    sample: bool  # whether the last token's logits are sampled this step


class Scheduler:
    def __init__(self, n_slots: int, max_waiting: int, unpaced_tokens: int = 64):
        self.unpaced_tokens = unpaced_tokens
        self.free_slots = list(range(n_slots - 1, -1, -1))
        self.max_waiting = max_waiting
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        if len(self.waiting) >= self.max_waiting:
            raise EngineOverloaded(f"{len(self.waiting)} requests are already waiting")
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Take a sequence out (finished or cancelled) and free its slot."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        if seq.slot is not None:
            self.free_slots.append(seq.slot)
            seq.slot = None

    def admit(self) -> list[Sequence]:
        """Give free KV slots to waiting sequences, oldest first; returns the ones admitted."""
        admitted = []
        while self.waiting and self.free_slots:
            seq = self.waiting.popleft()
            seq.slot = self.free_slots.pop()
            self.running.append(seq)
            admitted.append(seq)
        return admitted

    def schedule(self, budget: int, interactive_chunk: int) -> list[Work]:
        """This step's work for the running sequences, at most `budget` tokens."""
        work: list[Work] = []
        for seq in self.running:
            if budget == 0:
                break
            if not seq.prefilling and seq.last_token is not None:
                work.append(Work(seq, [seq.last_token], seq.position, True))
                budget -= 1
        generating = bool(work)
        paced = min(budget, interactive_chunk) if generating else budget
        for seq in self.running:
            if budget == 0:
                break
            if seq.prefilling:
                left = len(seq.prompt) - seq.n_computed
                # A short remainder goes in whole (one brief stall, and it joins the batch at once);
                # a long prompt is paced while others generate.
                allowed = budget if left <= self.unpaced_tokens else min(budget, paced)
                if allowed == 0:
                    continue
                chunk = seq.prompt[seq.n_computed : seq.n_computed + allowed]
                if seq.images:  # text only: an image's placeholders are decoded by the runner via mtmd
                    chunk = chunk[: next((k for k, t in enumerate(chunk) if t < 0), len(chunk))]
                    if not chunk:
                        continue
                done = seq.n_computed + len(chunk) == len(seq.prompt)
                work.append(Work(seq, chunk, seq.n_computed, done))
                budget -= len(chunk)
                if left > self.unpaced_tokens:
                    paced -= len(chunk)
        return work
