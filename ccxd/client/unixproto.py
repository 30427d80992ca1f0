"""What the daemon sends on its Unix socket, split into messages (no I/O).

JSON-RPC messages are lines; binary output frames (asked for with ``binary``)
come between them as a NUL byte, the frame's length (u32, little endian) and
the frame.  The kernel writes straight into :meth:`MessageReader.buffer`: small
messages into one reused buffer, a large frame into a buffer of its own, so
each byte is copied once on its way to the caller.
"""

from __future__ import annotations

import struct
from collections import deque

__all__ = ["MessageReader", "UnixProtocolError"]

_SCRATCH = 64 * 1024  # under glibc's mmap threshold: no mapping per read
_ROOM = 4096  # less free room than this at the end of the buffer: move what is left to its front
_HEAD = struct.Struct("<BI")


class UnixProtocolError(Exception):
    """The daemon sent something that is not ccxd's Unix framing."""


class MessageReader:
    """Turns received bytes into ``(is_binary, payload)`` messages (:attr:`messages`)."""

    def __init__(self, max_size: int = 1 << 30) -> None:
        self.max_size = max_size
        self.messages: deque[tuple[bool, bytes | bytearray]] = deque()
        self._buf = bytearray(_SCRATCH)
        self._start = 0  # first byte not yet taken
        self._end = 0  # end of the received bytes
        self._scanned = 0  # no newline in [_start, _scanned): a long line is not searched twice
        self._line: list[bytes] = []  # the parts of a line longer than the buffer
        self._payload: bytearray | None = None  # a large frame's own buffer, being filled
        self._got = 0

    def buffer(self) -> memoryview:
        """Where the next received bytes must be written."""
        if self._payload is not None:
            return memoryview(self._payload)[self._got :]
        if len(self._buf) - self._end < _ROOM:
            if self._start:
                rest = self._end - self._start
                self._buf[:rest] = self._buf[self._start : self._end]
                self._scanned -= self._start
                self._start, self._end = 0, rest
            if len(self._buf) - self._end < _ROOM:  # one line fills the buffer: keep it aside
                self._line.append(bytes(self._buf[: self._end]))
                self._start = self._end = self._scanned = 0
        return memoryview(self._buf)[self._end :]

    def received(self, n: int) -> None:
        """``n`` bytes were written where :meth:`buffer` said; new messages go to :attr:`messages`."""
        if self._payload is not None:
            self._got += n
            if self._got == len(self._payload):
                self.messages.append((True, self._payload))
                self._payload = None
            return
        self._end += n
        self._parse()

    def feed(self, data: bytes) -> None:
        """Take ``data`` as if it had been received."""
        view = memoryview(data)
        while view:
            room = self.buffer()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            view = view[n:]
            self.received(n)

    def _parse(self) -> None:
        buf = self._buf
        while self._start < self._end:
            start = self._start
            if not self._line and buf[start] == 0:
                if self._end - start < _HEAD.size:
                    return
                _, length = _HEAD.unpack_from(buf, start)
                if length > self.max_size:
                    raise UnixProtocolError(f"a binary frame of {length} bytes is over {self.max_size}")
                body = start + _HEAD.size
                have = self._end - body
                if have >= length:
                    self.messages.append((True, bytes(buf[body : body + length])))
                    self._start = self._scanned = body + length
                    continue
                # The rest of this frame goes straight into its own buffer.
                payload = bytearray(length)
                payload[:have] = buf[body : self._end]
                self._payload, self._got = payload, have
                self._start = self._end = self._scanned = 0
                return
            nl = buf.find(b"\n", max(start, self._scanned), self._end)
            if nl < 0:
                self._scanned = self._end
                return
            line = bytes(buf[start:nl])
            if self._line:
                self._line.append(line)
                line = b"".join(self._line)
                self._line.clear()
            self._start = self._scanned = nl + 1
            line = line.rstrip(b"\r")
            if line.strip():
                self.messages.append((False, line))
