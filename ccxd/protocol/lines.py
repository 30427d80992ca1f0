"""One stream's output cut into lines, as cc_executor's ``readline`` loop sent it (no I/O).

cc_executor sent one ``process.output`` per output line, and its clients count
and match lines per message; ccxd's log holds chunks that cut lines anywhere.
:class:`LineSplitter` turns the chunks of one stream back into lines: it holds a
partial line until its newline arrives, and cuts a line longer than ``limit``
bytes into pieces of at most ``limit`` bytes, never inside a UTF-8 sequence.
"""

from __future__ import annotations

__all__ = ["LINE_LIMIT", "LineSplitter"]

LINE_LIMIT = 64 * 1024
"""Largest piece of a line in one message (cc_executor's MAX_CHUNK_SIZE, in bytes here)."""

_MAX_BACKOFF = 3  # a UTF-8 sequence has at most 3 continuation bytes


class LineSplitter:
    """Cuts one stream's bytes into lines (newline kept) and pieces of at most ``limit`` bytes."""

    __slots__ = ("_held", "limit")

    def __init__(self, limit: int = LINE_LIMIT) -> None:
        if limit < 4:
            raise ValueError("limit must hold a whole UTF-8 sequence (4 bytes)")
        self.limit = limit
        self._held = b""

    @property
    def held(self) -> int:
        """Bytes of a partial line waiting for its newline."""
        return len(self._held)

    def feed(self, data: bytes) -> list[bytes]:
        """The whole lines (and full-size pieces of long lines) that ``data`` completes."""
        buf = self._held + data if self._held else data
        limit = self.limit
        out: list[bytes] = []
        start, end = 0, len(buf)
        while start < end:
            nl = buf.find(b"\n", start, start + limit)
            if nl >= 0:
                out.append(buf[start : nl + 1])
                start = nl + 1
                continue
            if end - start <= limit:
                break  # a partial line: wait for its newline (or for more than limit bytes)
            # No newline within limit bytes: cut there, unless that splits a character,
            # then before the character (buf[cut] exists: more than limit bytes remain).
            cut = start + limit
            for _ in range(_MAX_BACKOFF):
                if buf[cut] & 0xC0 != 0x80:
                    break
                cut -= 1
            if buf[cut] & 0xC0 == 0x80:  # not UTF-8 anyway: any cut will do
                cut = start + limit
            out.append(buf[start:cut])
            start = cut
        self._held = buf[start:]
        return out

    def flush(self) -> bytes:
        """The partial line held (the stream ended without a final newline), or ``b""``."""
        tail, self._held = self._held, b""
        return tail
