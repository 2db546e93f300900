"""Generated token bytes -> text: UTF-8 split across tokens, and stop sequences.

`Utf8Stream` holds back the bytes of a character until it is complete. `StopMatcher` holds back text
that might be the start of a stop sequence until that is decided, and ends the text at the first stop.
"""

from __future__ import annotations

import codecs

from .markers import split


class Utf8Stream:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Text that is safe to emit now. After a stop is seen, `stopped` is set and the text up to
        (not including) the stop is returned; nothing more is ever returned."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        safe, stop, rest = split(self._held + text, self.stops)
        if stop is not None:
            self.stopped = True
            self._held = ""
        else:
            self._held = rest
        return safe

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held
