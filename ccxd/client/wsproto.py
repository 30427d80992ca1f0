"""The client side of a WebSocket (RFC 6455) as a state machine: bytes in, messages out, no I/O.

The client library reads its daemon's output through this instead of the
``websockets`` library, because per byte it is the client's largest cost:
that library copies every frame several times (stream buffer, frame, message)
and runs a generator per frame.  Here the transport asks :meth:`FrameReader.buffer`
where the next bytes go and tells :meth:`FrameReader.received` how many came;
once a frame's header has arrived, the rest of a large payload is read by the
kernel straight into that payload's own buffer.

What is checked, as RFC 6455 wants of a client: server frames are unmasked,
carry no RSV bits (no extension is ever negotiated) and known opcodes;
control frames are whole and at most 125 bytes; continuation frames only
continue a started message; a message is at most ``max_size`` bytes; text is
valid UTF-8; a close payload is empty or a valid code with a UTF-8 reason.
A violation raises :class:`WsProtocolError` with the close code to send.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections import deque
from collections.abc import Iterable
from typing import Final

from websockets.utils import apply_mask  # C speed-up that ships with websockets

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameReader",
    "HandshakeError",
    "WsProtocolError",
    "close_payload",
    "encode_frame",
    "handshake_request",
    "head_end",
    "new_key",
    "parse_handshake",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_DATA_OPS: Final = frozenset((OP_CONT, OP_TEXT, OP_BINARY))
_CONTROL_OPS: Final = frozenset((OP_CLOSE, OP_PING, OP_PONG))

_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_LEN16: Final = struct.Struct("!H")
_LEN64: Final = struct.Struct("!Q")
_SCRATCH: Final = 64 * 1024
_MAX_HEAD: Final = 64 * 1024


class WsProtocolError(Exception):
    """The server broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """The opening handshake failed; ``status`` and ``headers`` (names in lower case) of an answer."""

    def __init__(
        self, message: str, status: int | None = None, headers: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


# -- opening handshake ----------------------------------------------------------


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _accept(key: str) -> str:
    # SHA-1 because RFC 6455 says so: it proves a WebSocket server answered, it guards no secret.
    digest = hashlib.sha1((key + _GUID).encode("ascii"), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_request(host: str, resource: str, key: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The HTTP/1.1 upgrade request for ``resource`` (path and query) on ``host`` (the URL's netloc)."""
    lines = [
        f"GET {resource} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in headers:
        if any(c in name + value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} contains a line break or NUL")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_handshake(head: bytes, key: str) -> dict[str, list[str]]:
    """Check the server's response head (up to the blank line) to a request made with ``key``.

    Returns its headers (lower-case names); any other answer than 101 raises
    :class:`HandshakeError` with its status and headers.
    """
    try:
        text = head.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        status = int(code)
    except ValueError:
        raise HandshakeError("the server did not answer with HTTP") from None
    if not version.startswith("HTTP/1."):
        raise HandshakeError(f"unexpected HTTP version {version!r}")
    fields: dict[str, list[str]] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError(f"malformed header line {line[:100]!r}", status if status != 101 else None)
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    if status != 101:
        raise HandshakeError(f"HTTP {status}", status, fields)
    if [v.lower() for v in fields.get("upgrade", [])] != ["websocket"]:
        raise HandshakeError("the server did not upgrade to websocket")
    tokens = {t.strip().lower() for v in fields.get("connection", []) for t in v.split(",")}
    if "upgrade" not in tokens:
        raise HandshakeError("the server's Connection header lacks 'upgrade'")
    if fields.get("sec-websocket-accept") != [_accept(key)]:
        raise HandshakeError("wrong Sec-WebSocket-Accept")
    if "sec-websocket-extensions" in fields:
        raise HandshakeError("the server chose an extension nobody asked for")
    if "sec-websocket-protocol" in fields:
        raise HandshakeError("the server chose a subprotocol nobody asked for")
    return fields


def head_end(data: bytes | bytearray) -> int:
    """Where the response head ends (just past its blank line), or -1; HandshakeError if too long."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > _MAX_HEAD:
            raise HandshakeError("the server's response head is too long")
        return -1
    return end + 4


# -- frames we send (always masked) -------------------------------------------------


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One whole, masked client frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((first, 0x80 | 126)) + _LEN16.pack(n)
    else:
        head = bytes((first, 0x80 | 127)) + _LEN64.pack(n)
    mask = os.urandom(4)
    return head + mask + apply_mask(payload, mask)


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame."""
    return _LEN16.pack(code) + reason.encode("utf-8")[:123]


def _valid_close_code(code: int) -> bool:
    # RFC 6455 §7.4: 1000-1003, 1007-1011 (and 1012-1014 registered since), 3000-4999.
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code < 5000
    )


# -- frames we receive -----------------------------------------------------------------

Event = tuple[int, bytes | bytearray]
"""(opcode, payload): OP_TEXT or OP_BINARY with a whole message, OP_PING, OP_CLOSE."""


class FrameReader:
    """Turns the bytes a server sends into whole messages, pings and the close frame."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.events: deque[Event] = deque()
        self._buf = bytearray(_SCRATCH)  # headers and small frames
        self._start = 0
        self._end = 0
        self._payload: bytearray | None = None  # a large frame's own buffer, being filled
        self._got = 0
        self._op = 0
        self._fin = True
        self._fragments: list[bytes | bytearray] = []
        self._frag_op = 0
        self._frag_size = 0
        self.closed = False

    def buffer(self) -> memoryview:
        """Where the next received bytes must be written."""
        if self._payload is not None:
            return memoryview(self._payload)[self._got :]
        if len(self._buf) - self._end < 4096 and self._start:
            rest = self._end - self._start
            self._buf[:rest] = self._buf[self._start : self._end]
            self._start, self._end = 0, rest
        return memoryview(self._buf)[self._end :]

    def received(self, n: int) -> None:
        """``n`` bytes were written where :meth:`buffer` said; new events go to :attr:`events`."""
        if self._payload is not None:
            self._got += n
            if self._got == len(self._payload):
                payload, self._payload = self._payload, None
                self._frame(self._op, self._fin, payload)
            return
        self._end += n
        self._parse()

    def feed(self, data: bytes) -> None:
        """Take ``data`` as if it had been received (bytes read past the handshake)."""
        view = memoryview(data)
        while view:
            room = self.buffer()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            view = view[n:]
            self.received(n)

    def _parse(self) -> None:
        buf = self._buf
        while not self.closed:
            start = self._start
            avail = self._end - start
            if avail < 2:
                break
            b0 = buf[start]
            b1 = buf[start + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                head = 4
                if avail < head:
                    break
                (length,) = _LEN16.unpack_from(buf, start + 2)
            elif length == 127:
                head = 10
                if avail < head:
                    break
                (length,) = _LEN64.unpack_from(buf, start + 2)
            op = b0 & 0x0F
            fin = bool(b0 & 0x80)
            self._check(b0, b1, op, fin, length)
            body = start + head
            if avail - head >= length:
                self._start = body + length
                self._frame(op, fin, bytes(buf[body : body + length]))
                continue
            # The rest of this payload goes straight into its own buffer.
            payload = bytearray(length)
            have = avail - head
            with memoryview(buf) as view:
                payload[:have] = view[body : self._end]
            self._start = self._end = 0
            self._payload, self._got, self._op, self._fin = payload, have, op, fin
            return
        if self._start == self._end:
            self._start = self._end = 0

    def _check(self, b0: int, b1: int, op: int, fin: bool, length: int) -> None:
        if b1 & 0x80:
            raise WsProtocolError(1002, "the server masked a frame")
        if b0 & 0x70:
            raise WsProtocolError(1002, "reserved bits set without an extension")
        if op in _CONTROL_OPS:
            if not fin:
                raise WsProtocolError(1002, "fragmented control frame")
            if length > 125:
                raise WsProtocolError(1002, "control frame over 125 bytes")
            return
        if op not in _DATA_OPS:
            raise WsProtocolError(1002, f"unknown opcode {op:#x}")
        if op == OP_CONT and not self._fragments:
            raise WsProtocolError(1002, "continuation frame without a message")
        if op != OP_CONT and self._fragments:
            raise WsProtocolError(1002, "new message before the last one ended")
        if self._frag_size + length > self.max_size:
            raise WsProtocolError(1009, f"message over {self.max_size} bytes")

    def _frame(self, op: int, fin: bool, data: bytes | bytearray) -> None:
        if op == OP_PING:
            self.events.append((OP_PING, data))
            return
        if op == OP_PONG:
            return
        if op == OP_CLOSE:
            self._close(data)
            return
        if op != OP_CONT:
            if fin:
                self._message(op, data)
                return
            self._frag_op = op
        self._fragments.append(data)
        self._frag_size += len(data)
        if fin:
            whole = b"".join(self._fragments)
            self._fragments = []
            self._frag_size = 0
            self._message(self._frag_op, whole)

    def _message(self, op: int, data: bytes | bytearray) -> None:
        if op == OP_TEXT:
            try:
                str(data, "utf-8")
            except UnicodeDecodeError:
                raise WsProtocolError(1007, "text message is not valid UTF-8") from None
        self.events.append((op, data))

    def _close(self, data: bytes | bytearray) -> None:
        if len(data) == 1:
            raise WsProtocolError(1002, "close frame with a one-byte payload")
        if data:
            (code,) = _LEN16.unpack_from(data)
            if not _valid_close_code(code):
                raise WsProtocolError(1002, f"invalid close code {code}")
            try:
                bytes(data[2:]).decode("utf-8")
            except UnicodeDecodeError:
                raise WsProtocolError(1007, "close reason is not valid UTF-8") from None
        self.closed = True
        self.events.append((OP_CLOSE, data))
