"""Finding markers in streamed text: shared by stop sequences and the output parsers.

Text arrives in pieces, and a marker can be split across pieces. `split` returns what is safe to
emit now, the marker found (if any), and what must wait: the text after the marker, or a tail
that might still grow into a marker.
"""

from __future__ import annotations

from typing import Sequence


def earliest(buf: str, markers: Sequence[str]) -> tuple[int, str] | None:
    """The first occurrence of any marker in buf (the longest marker wins a tie)."""
    best: tuple[int, str] | None = None
    for m in markers:
        i = buf.find(m)
        if i != -1 and (best is None or i < best[0] or (i == best[0] and len(m) > len(best[1]))):
            best = (i, m)
    return best


def partial_tail(buf: str, markers: Sequence[str]) -> int:
    """Length of the longest tail of buf that is a proper prefix of some marker."""
    keep = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(buf)), keep, -1):
            if buf.endswith(m[:n]):
                keep = n
                break
    return keep


def split(buf: str, markers: Sequence[str]) -> tuple[str, str | None, str]:
    """(safe text, marker or None, rest). With a marker, rest is the text after it; without, rest
    is a tail that could be the start of a marker and must be held back."""
    found = earliest(buf, markers)
    if found is not None:
        i, m = found
        return buf[:i], m, buf[i + len(m):]
    keep = partial_tail(buf, markers)
    return buf[: len(buf) - keep], None, buf[len(buf) - keep:]
