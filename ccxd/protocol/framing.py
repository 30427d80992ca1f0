"""Newline-delimited JSON framing with a size limit (no I/O).

Bytes go in as they arrive; complete lines come out.  A line longer than the
limit is never buffered: the framer reports it once, as soon as it is known to
be too long, then discards the rest of it up to its newline.
"""

from __future__ import annotations

__all__ = ["LineFramer", "TooLarge"]


class TooLarge:
    """A message exceeded the limit; it was discarded, not stored."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __repr__(self) -> str:
        return f"TooLarge(limit={self.limit})"


class LineFramer:
    """Split a byte stream into lines of at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._skipping = False

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for a newline."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | TooLarge]:
        """Accept bytes; return complete messages and size violations, in order."""
        out: list[bytes | TooLarge] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            if self._skipping:
                self._skipping = False
            elif len(self._buf) + (nl - start) > self.limit:
                self._buf.clear()
                out.append(TooLarge(self.limit))
            else:
                if self._buf:
                    self._buf += data[start:nl]
                    line = bytes(self._buf)
                    self._buf.clear()
                else:
                    line = data[start:nl]
                line = line.rstrip(b"\r")
                if line.strip():
                    out.append(line)
            start = nl + 1
        rest = len(data) - start
        if rest and not self._skipping:
            if len(self._buf) + rest > self.limit:
                self._buf.clear()
                self._skipping = True
                out.append(TooLarge(self.limit))
            else:
                self._buf += data[start:]
        return out
