"""The implicit context cache: KV state of earlier sequences, kept in host memory, reused by any
later request whose prompt starts with the same tokens.

An entry is the token list of a finished sequence and llama.cpp's saved state of its KV cells
(`llama_state_seq_get_data`). A hit restores the entry into the new sequence's slot and drops the
cells past the common prefix, so exactly that many prompt tokens are not recomputed. Entries live
until evicted, least recently used first, to keep the total under a byte budget. Restoring is a
memory copy (milliseconds for thousands of tokens); the slot keeps its own KV stream, so cached
entries never lengthen the attention window of running sequences.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(eq=False)
class Entry:
    tokens: list[int]
    state: object  # a ctypes byte array holding llama.cpp's sequence state
    nbytes: int


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix, by binary search over C-speed slice comparisons."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # invariant: a[:lo] == b[:lo], a[:hi+1] != b[:hi+1] somewhere past lo
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class PrefixCache:
    def __init__(self, budget_bytes: int, min_tokens: int):
        self.budget_bytes = budget_bytes
        self.min_tokens = min_tokens
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # oldest first
        self.nbytes = 0
        self.hits = 0
        self.hit_tokens = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt: list[int]) -> tuple[Entry, int] | None:
        """The entry sharing the longest prefix with `prompt`, and how many tokens to reuse. At least
        the prompt's last token is always recomputed: its logits are needed to sample."""
        best, best_len = None, 0
        for entry in self._entries.values():
            n = common_prefix(entry.tokens, prompt)
            if n > best_len:
                best, best_len = entry, n
        reuse = min(best_len, len(prompt) - 1)
        if best is None or reuse < self.min_tokens:
            return None
        self._entries.move_to_end(id(best))
        return best, reuse

    def record_hit(self, tokens: int) -> None:
        self.hits += 1
        self.hit_tokens += tokens

    def wants(self, tokens: list[int]) -> bool:
        """Whether saving a sequence with these tokens would add anything."""
        if len(tokens) < self.min_tokens:
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
