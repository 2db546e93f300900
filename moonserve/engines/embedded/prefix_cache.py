"""The implicit context cache: KV state of earlier sequences, kept in host memory, reused by any
later request whose prompt starts with the same tokens.

An entry is the token list of a finished sequence and llama.cpp's saved state of its KV cells
(`llama_state_seq_get_data`). A hit restores the entry into the new sequence's slot and drops the
cells past the common prefix, so exactly that many prompt tokens are not recomputed. Entries live
until evicted, least recently used first, to keep the total under a byte budget. Restoring is a
memory copy (milliseconds for thousands of tokens); the slot keeps its own KV stream, so cached
entries never lengthen the attention window of running sequences.

Any shared prefix of `REUSE_MIN_TOKENS` or more is reused, as llama-server reuses a slot's prompt:
the chat template's header, a client retrying, eight identical requests at once. Only a prefix of
`min_tokens` or more (Model Studio's minimum, 256) is a cache *hit*: reported as `cached_tokens` and
billed at the cached ratio. A shorter one is a speed-up the bill does not see, as on Model Studio.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from .llama import Context
from .sequence import Sequence, common_prefix  # noqa: F401 (common_prefix: also this module's)

log = logging.getLogger("moonserve.engine")

# Restoring copies the whole entry (~23 KB a token for SmolLM2) and then drops what is not shared;
# computing a prompt token costs ~2 ms here. From 16 shared tokens reuse wins for any entry that
# fits a 4,096-token slot.
REUSE_MIN_TOKENS = 16


@dataclass(eq=False)
class Entry:
    tokens: list[int]
    state: object  # a ctypes byte array holding llama.cpp's sequence state
    nbytes: int


class PrefixCache:
    def __init__(self, budget_bytes: int, min_tokens: int, reuse_min_tokens: int = REUSE_MIN_TOKENS):
        self.budget_bytes = budget_bytes
        self.min_tokens = min_tokens  # a hit from here on: cached_tokens, the cached price
        self.reuse_min_tokens = min(reuse_min_tokens, min_tokens)
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # oldest first
        self.nbytes = 0
        self.hits = 0
        self.hit_tokens = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def restore(self, seq: Sequence, ctx: Context) -> int:
        """Load the longest cached prefix of a newly admitted sequence's prompt into its slot;
        returns how many prompt tokens it spares (0: none). `seq.n_cached`, what the bill counts as
        a hit, is that many if it reaches `min_tokens`, else 0."""
        found = self.lookup(seq.prompt)
        if found is None:
            return 0
        entry, reuse = found
        while reuse > 0 and seq.prompt[reuse] < 0 and reuse not in seq.images:
            reuse -= 1  # never stop inside an image: back off to where it starts
        if reuse < self.reuse_min_tokens:
            return 0
        if not ctx.restore_state(entry.state, entry.nbytes, seq.slot):
            ctx.forget(seq.slot)
            log.warning("prefix cache: llama.cpp refused a saved state; computing the prompt instead")
            return 0
        ctx.forget(seq.slot, reuse)
        seq.n_computed = reuse
        seq.n_cached = reuse if reuse >= self.min_tokens else 0
        self.record_hit(reuse)
        return reuse

    def save(self, seq: Sequence, ctx: Context) -> None:
        """Keep a retiring sequence's KV cells, if they add a prefix the cache lacks."""
        tokens = seq.computed_tokens
        if seq.slot is None or not self.wants(tokens):
            return
        try:
            state, size = ctx.save_state(seq.slot)
        except Exception:
            log.exception("prefix cache: could not save a sequence")
            return
        self.insert(Entry(tokens, state, size))

    def lookup(self, prompt: list[int]) -> tuple[Entry, int] | None:
        """The entry sharing the longest prefix with `prompt` (of those, the shortest: the cheapest
        to restore), and how many tokens to reuse. At least the prompt's last token is always
        recomputed: its logits are needed to sample."""
        best, best_len = None, 0
        for entry in self._entries.values():
            n = common_prefix(entry.tokens, prompt)
            if n > best_len or (n == best_len and best is not None and len(entry.tokens) < len(best.tokens)):
                best, best_len = entry, n
        reuse = min(best_len, len(prompt) - 1)
        if best is None or reuse < self.reuse_min_tokens:
            return None
        self._entries.move_to_end(id(best))
        return best, reuse

    def record_hit(self, tokens: int) -> None:
        self.hits += 1
        self.hit_tokens += tokens

    def wants(self, tokens: list[int]) -> bool:
        """Whether saving a sequence with these tokens would add anything."""
        if len(tokens) < self.reuse_min_tokens:
            return False
        for entry in self._entries.values():
            if len(entry.tokens) >= len(tokens) and entry.tokens[: len(tokens)] == tokens:
                self._entries.move_to_end(id(entry))
                return False  # already covered by a longer (or equal) entry
        return True

    def insert(self, entry: Entry) -> None:
        if entry.nbytes > self.budget_bytes:
            return
        # An older entry that is a prefix of the new one is now redundant.
        for key, old in list(self._entries.items()):
            if len(old.tokens) <= len(entry.tokens) and entry.tokens[: len(old.tokens)] == old.tokens:
                self._drop(key)
        self._entries[id(entry)] = entry
        self.nbytes += entry.nbytes
        while self.nbytes > self.budget_bytes:
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.nbytes -= entry.nbytes
