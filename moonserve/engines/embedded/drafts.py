"""Draft tokens from the request's own context (prompt lookup): where the last few tokens of the
prompt and output so far stood before, the tokens that followed them then are a guess at what
follows now. An edit that rewrites a file, an answer that quotes its input, a tool call that repeats
a path: most of their tokens stand in the prompt already.

The scheduler puts a sequence's draft after its next input token in one decode step; the runner
samples each position in turn and keeps the draft up to the first token the sampler does not draw
(its own draw there is the step's last token). The drafts are a deterministic guess, so drawing from
the model's distribution at each position and comparing is the standard acceptance rule: the output
is distributed exactly as without drafts, and a seeded request draws the same numbers (one per
output token, in order). In deterministic mode, whose kernels compute a token's logits bit for bit
the same however many tokens share its batch, the output is identical to the output without drafts
(tested); the default kernels give a verified position's logits a last-bits difference, as batching
does, which can tip a near tie.
"""

from __future__ import annotations

NGRAMS = (3, 2)  # the longest match first: the last 3 tokens, else the last 2


class PromptLookup:
    """One sequence's index of its context's n-grams, updated as tokens come, where the last draft's
    source goes on, and how long a draft it currently makes.

    Where a draft came from is where the next one comes from: the source continues after the
    positions the last step consumed, the token the model chose at a wrong guess taking the place
    of the guessed one (an edit renames a word, a list counts on: one token instead of another, the
    rest as it stood), where the latest occurrence of an n-gram may be anywhere (another copy of a
    repeated line, the function before the one being copied). A draft wrong from its first token
    sends the next lookup back to the n-grams.

    A draft ends before a slot that varied: a position whose token differs from the one at its
    source (a wrong guess there, or a token written where a draft stopped and then differing from
    the source's). What changed in the last copy tends to change in the next (a counter, a name the
    model renames as it goes), and a wrong guess costs the rest of the draft; the model writes that
    slot itself, and the draft after it continues the source past it. The length is halved after a draft that was
    wrong from its first token, doubled (up to `max_tokens`) after one that was right throughout,
    so that text that does not copy pays for few drafted tokens a step."""

    __slots__ = ("max_tokens", "cap", "index", "indexed", "source", "follow", "at", "varied", "pending")

    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self.cap = max_tokens
        self.index: dict[tuple[int, ...], int] = {}  # n-gram -> where what followed its latest occurrence starts
        self.indexed = 0  # the context positions whose n-grams are in the index
        self.source = 0  # where the last draft was copied from
        self.follow: int | None = None  # where the next draft continues that source, if it does
        self.at = 0  # the context's length that `follow` is for (a step without a draft loses it)
        self.varied: set[int] = set()  # context positions whose token differs from their source's
        self.pending: tuple[int, int] | None = None  # a slot the model writes itself: (position, source's token)

    def draft(self, context: list[int], limit: int) -> list[int]:
        """Up to min(max_tokens, limit) tokens: the last draft's source continued, else those that
        followed the latest earlier occurrence of the context's last n-gram; none if neither (or
        only an image's placeholders)."""
        n = len(context)
        if self.pending is not None:
            position, token = self.pending
            if position < n:
                self.pending = None
                if context[position] != token:
                    self.varied.add(position)
        index = self.index
        # index every n-gram that ends before the last token (the last one has nothing after it yet)
        for end in range(max(self.indexed, 2), n):
            for k in NGRAMS:
                if end >= k:
                    index[tuple(context[end - k:end])] = end
        self.indexed = max(self.indexed, n)
        limit = min(limit, self.cap)
        start = self.follow if self.follow is not None and self.at == n and self.follow < n else None
        self.follow = None
        if limit <= 0:
            return []
        if start is None:
            for k in NGRAMS:
                if n >= k:
                    start = index.get(tuple(context[n - k:]))
                    if start is not None and start < n:
                        break
            else:
                return []
        self.source, self.at = start, n
        out = context[start:start + limit]
        varied = self.varied
        for i, t in enumerate(out):
            if t < 0:  # an image's placeholder: never a token to draft
                return out[:i]
            if start + i in varied:  # the model writes this slot itself; the source goes on after it
                self.pending = (n + i, t)
                if i == 0:
                    self.follow, self.at = start + 1, n + 1
                return out[:i]
        return out

    def verified(self, drafted: int, accepted: int) -> None:
        """How the last draft fared: `accepted` of its `drafted` tokens were right (and the step
        added the model's own token after them)."""
        if accepted < drafted:
            self.varied.add(self.at + accepted)  # the model's token where the guess stood
        if accepted == 0:
            self.cap = max(1, self.cap // 2)
            return
        self.follow, self.at = self.source + accepted + 1, self.at + accepted + 1
        if accepted == drafted:
            self.cap = min(self.max_tokens, self.cap * 2)
