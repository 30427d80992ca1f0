"""Cut a byte stream into chunks that never split a UTF-8 character (no I/O).

A read from a pipe can end in the middle of a multi-byte character.  The
chunker holds back such an incomplete tail (at most three bytes) until the next
read or the end of the stream, so every chunk of valid UTF-8 output is itself
valid UTF-8.  Bytes that are not UTF-8 pass through unchanged.
"""

from __future__ import annotations

__all__ = ["Utf8Chunker"]


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _sequence_length(lead: int) -> int:
    if lead < 0xC0:
        return 1
    if lead < 0xE0:
        return 2
    if lead < 0xF0:
        return 3
    if lead < 0xF8:
        return 4
    return 1


def complete_length(buf: bytes | bytearray) -> int:
    """Length of ``buf`` without a trailing, incomplete UTF-8 sequence."""
    n = len(buf)
    # Look back over at most three continuation bytes for the sequence's lead byte.
    for back in range(1, min(4, n) + 1):
        byte = buf[n - back]
        if _is_continuation(byte):
            continue
        need = _sequence_length(byte)
        return n - back if need > back else n
    return n


class Utf8Chunker:
    """Turn reads of one stream into chunks of at most ``max_chunk`` bytes."""

    __slots__ = ("_max", "_pending")

    def __init__(self, max_chunk: int = 65536) -> None:
        if max_chunk < 4:
            raise ValueError("max_chunk must hold a whole UTF-8 character")
        self._max = max_chunk
        self._pending = b""

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of their character."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[bytes]:
        """Accept one read; return the chunks that are complete."""
        buf = self._pending + data if self._pending else data
        cut = complete_length(buf)
        self._pending = buf[cut:]
        return self._split(buf[:cut]) if cut else []

    def flush(self) -> list[bytes]:
        """At end of stream: return whatever is held back, as is."""
        buf, self._pending = self._pending, b""
        return self._split(buf) if buf else []

    def _split(self, buf: bytes) -> list[bytes]:
        if len(buf) <= self._max:
            return [buf]
        out = []
        start = 0
        end_all = len(buf)
        while end_all - start > self._max:
            end = start + self._max
            # Step back to a character boundary (never more than three bytes).
            back = 0
            while back < 3 and _is_continuation(buf[end - back]):
                back += 1
            if back < 3 or not _is_continuation(buf[end - back]):
                end -= back
            out.append(buf[start:end])
            start = end
        out.append(buf[start:])
        return out
