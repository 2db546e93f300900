"""Generated token bytes -> text: UTF-8 split across tokens, and stop sequences.

`Utf8Stream` holds back the bytes of a character until it is complete. `StopMatcher` holds back text
that might be the start of a stop sequence until that is decided, and ends the text at the first stop.
"""

from __future__ import annotations

import codecs


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
        buf = self._held + text
        first = -1
        for stop in self.stops:
            i = buf.find(stop)
            if i != -1 and (first == -1 or i < first):
                first = i
        if first != -1:
            self.stopped = True
            self._held = ""
            return buf[:first]
        # hold back the longest tail of buf that is a prefix of some stop
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), keep, -1):
                if buf.endswith(stop[:n]):
                    keep = n
                    break
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held
