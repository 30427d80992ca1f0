"""How the client reaches a daemon: a Unix socket or a WebSocket URL.

Both transports carry the same JSON-RPC messages; each yields whole messages
(text for JSON, bytes for binary output frames).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    import ssl

__all__ = ["Message", "Transport", "UnixTransport", "WebSocketTransport", "open_transport"]

_HEAD_READ = 4096  # the handshake response is read in pieces this big
_MAX_MESSAGE = 1 << 30  # the daemon bounds what it sends; this only stops a runaway length
_QUEUE_HIGH, _QUEUE_LOW = 64, 16  # messages waiting for the reader: stop reading the socket, resume
_OPEN_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 5.0


class TransportError(Exception):
    """The transport could not be opened; ``not_running`` when nothing listens.

    ``denied`` when the daemon refused us; ``untrusted`` when we refused it: it is
    not shown to be the user's own ccxd (:mod:`ccxd.trust`), and nothing
    was sent to it.
    """

    def __init__(
        self, message: str, *, not_running: bool = False, denied: bool = False, untrusted: bool = False
    ) -> None:
        super().__init__(message)
        self.not_running = not_running
        self.denied = denied
        self.untrusted = untrusted


Message = tuple[bool, bytes | bytearray]
"""(is_binary, payload): JSON text, or a binary output frame."""


class Transport(Protocol):
    """One open connection to a daemon."""

    description: str

    async def send(self, data: bytes) -> None:
        """Send one JSON message."""

    def messages(self) -> AsyncIterator[Message]:
        """Yield messages until the connection ends."""

    async def close(self) -> None:
        """Close the connection."""


class _QueuedProtocol(asyncio.BufferedProtocol):
    """What both transports' protocols share: messages queued for one reader, flow control both ways."""

    def __init__(self, messages: collections.deque[Message]) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.messages = messages
        self.error: ConnectionError | None = None
        self.ended = False
        self._wake: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._paused_writing = False
        self._drained: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _gone(self) -> None:
        """The connection is lost: wake every waiter."""
        self._notify()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self.lost.done():
            self.lost.set_result(None)

    def _queued(self) -> None:
        """Messages were queued: stop reading the socket while the reader is behind, and wake it."""
        if len(self.messages) >= _QUEUE_HIGH and not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _finished(self) -> bool:
        return self.ended

    async def drain(self) -> None:
        if self._paused_writing:
            # One future for every sender waiting: a future per waiter would leave all but the last
            # waiting forever once writing resumes (300 concurrent job.start calls hung).
            if self._drained is None or self._drained.done():
                self._drained = self.loop.create_future()
            await asyncio.shield(self._drained)

    async def next_batch(self) -> bool:
        """Wait for messages; False once the connection has ended and none are left."""
        while not self.messages:
            if self.error is not None:
                raise self.error
            if self._finished():
                return False
            self._wake = self.loop.create_future()
            await self._wake
        return True

    def resume(self) -> None:
        if self._paused_reading and len(self.messages) <= _QUEUE_LOW and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()


class _UnixProtocol(_QueuedProtocol):
    """The I/O half of :class:`UnixTransport`: the kernel writes into :class:`MessageReader`'s buffers.

    A plain stream reader would have asyncio ``recv`` a fresh 256 KiB bytes per
    read, which glibc serves with ``mmap``/``munmap`` each time (about 30 % more
    client CPU per message; docs/decisions/20-benchmarks.md).
    """

    def __init__(self) -> None:
        from ccxd.client.unixproto import MessageReader

        self.reader = MessageReader(_MAX_MESSAGE)
        super().__init__(self.reader.messages)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        from ccxd.client.unixproto import UnixProtocolError

        try:
            self.reader.received(nbytes)
        except UnixProtocolError as exc:
            self.error = ConnectionError(f"the daemon sent something that is not ccxd's protocol: {exc}")
            if self.transport is not None:
                self.transport.abort()
        self._queued()

    def eof_received(self) -> bool:
        self.ended = True
        self._notify()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = ConnectionError(str(exc)) if not isinstance(exc, ConnectionError) else exc
        self.ended = True
        self._gone()

    async def drain(self) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection to the daemon lost")
        await super().drain()


class UnixTransport:
    """Newline-delimited JSON over a Unix socket."""

    def __init__(self, transport: asyncio.Transport, proto: _UnixProtocol, path: Path) -> None:
        self._transport = transport
        self._proto = proto
        self.description = f"unix:{path}"

    @classmethod
    async def open(cls, path: Path) -> UnixTransport:
        """Connect to the socket at ``path``, once :mod:`ccxd.trust` says it is the user's daemon."""
        from ccxd import trust

        loop = asyncio.get_running_loop()
        try:
            where = trust.check_socket_dir(path)
            transport, proto = await loop.create_unix_connection(_UnixProtocol, str(where))
        except trust.Untrusted as exc:
            raise TransportError(str(exc), untrusted=True) from None
        except FileNotFoundError:
            raise TransportError(f"ccxd is not running (no socket at {path})", not_running=True) from None
        except ConnectionRefusedError:
            raise TransportError(
                f"ccxd is not running (nothing listens on {path})", not_running=True
            ) from None
        except PermissionError:
            raise TransportError(f"permission denied for {path}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR):
                raise TransportError(
                    f"ccxd is not running ({path} is not a socket)", not_running=True
                ) from None
            raise TransportError(f"cannot connect to {path}: {exc}") from None
        try:
            trust.check_unix_peer(transport.get_extra_info("socket"), str(path))
        except trust.Untrusted as exc:
            transport.abort()
            raise TransportError(str(exc), untrusted=True) from None
        return cls(transport, proto, path)

    async def send(self, data: bytes) -> None:
        """Send one message."""
        if self._transport.is_closing():
            raise ConnectionResetError("connection to the daemon lost")
        self._transport.write(data + b"\n")
        await self._proto.drain()

    async def messages(self) -> AsyncIterator[Message]:
        """Yield each line as it arrives."""
        proto = self._proto
        queue = proto.messages
        while await proto.next_batch():
            while queue:
                yield queue.popleft()
                proto.resume()

    async def close(self) -> None:
        """Close the socket."""
        self._transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await asyncio.shield(self._proto.lost)


class _WsProtocol(_QueuedProtocol):
    """The I/O half of :class:`WebSocketTransport`: the kernel writes into :class:`FrameReader`'s buffers."""

    def __init__(self, key: str, max_size: int) -> None:
        from ccxd.client.wsproto import FrameReader

        super().__init__(collections.deque())
        self.key = key
        self.reader = FrameReader(max_size)
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.response_headers: dict[str, list[str]] = {}  # of the 101 answer (lower-case names)
        # ``ended``: the server closed normally (1000/1001) or we did.
        self.close_sent = False
        self._head: bytearray | None = bytearray(_HEAD_READ)
        self._head_len = 0

    # -- asyncio callbacks --------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._head is not None:
            if self._head_len == len(self._head):
                self._head.extend(bytes(_HEAD_READ))
            return memoryview(self._head)[self._head_len :]
        return self.reader.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        from ccxd.client.wsproto import HandshakeError, WsProtocolError

        try:
            if self._head is not None:
                self._head_len += nbytes
                self._handshake()
            else:
                self.reader.received(nbytes)
        except HandshakeError as exc:
            if not self.opened.done():
                self.opened.set_exception(exc)
            self._abort()
            return
        except WsProtocolError as exc:
            self._fail(exc.code, exc.reason)
            return
        self._take_events()

    def eof_received(self) -> bool:
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            from ccxd.client.wsproto import HandshakeError

            self.opened.set_exception(HandshakeError(f"connection closed during the handshake: {exc}"))
        if not self.ended and self.error is None:
            self.error = ConnectionError(f"websocket closed: no close frame received ({exc or 'EOF'})")
        self._gone()

    # -- the rest ---------------------------------------------------------------

    def _handshake(self) -> None:
        from ccxd.client.wsproto import head_end, parse_handshake

        assert self._head is not None
        data = self._head[: self._head_len]
        end = head_end(data)
        if end < 0:
            return
        self.response_headers = parse_handshake(bytes(data[:end]), self.key)
        rest = bytes(data[end:])
        self._head = None
        self.opened.set_result(None)
        if rest:
            self.reader.feed(rest)

    def _take_events(self) -> None:
        from ccxd.client.wsproto import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, encode_frame

        events = self.reader.events
        while events:
            op, data = events.popleft()
            if op == OP_BINARY:
                self.messages.append((True, data))
            elif op == OP_TEXT:
                self.messages.append((False, bytes(data)))
            elif op == OP_PING:
                self.write(encode_frame(OP_PONG, bytes(data)))
            elif op == OP_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                if not self.close_sent:
                    self.close_sent = True
                    self.write(encode_frame(OP_CLOSE, bytes(data[:2])))
                if code in (1000, 1001, 1005):  # 1005: a close frame without a code
                    self.ended = True
                else:
                    reason = bytes(data[2:]).decode("utf-8", "replace")
                    self.error = ConnectionError(f"websocket closed: {code} {reason}".rstrip())
        self._queued()

    def _fail(self, code: int, reason: str) -> None:
        from ccxd.client.wsproto import OP_CLOSE, close_payload, encode_frame

        self.error = ConnectionError(f"websocket closed: {code} {reason}")
        if not self.close_sent:
            self.close_sent = True
            self.write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        if self.transport is not None:
            self.transport.close()
        self._notify()

    def _abort(self) -> None:
        # Nobody may wait for the handshake any more: its failure is no news.
        self.opened.add_done_callback(lambda f: f.cancelled() or f.exception())
        if self.transport is not None:
            self.transport.abort()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _finished(self) -> bool:
        return self.ended or (self.transport is not None and self.transport.is_closing())


class WebSocketTransport:
    """JSON-RPC over a WebSocket (``ws://`` or ``wss://``), authenticated by a bearer token.

    Frames are read by :mod:`ccxd.client.wsproto` (RFC 6455, client side) on a
    buffered asyncio protocol: a large binary frame is received straight into
    its own buffer and handed on without a copy.
    """

    def __init__(self, proto: _WsProtocol, url: str) -> None:
        self._proto = proto
        self.description = url

    @classmethod
    async def open(cls, url: str, token: str | None, cafile: str | None = None) -> WebSocketTransport:
        """Connect, and make sure the server is the user's ccxd before sending it anything.

        On loopback the server side of the connection must belong to the user or
        root (:func:`ccxd.trust.check_tcp_peer`), checked before the first byte;
        such a server gets the token as a bearer header.  Any other server must
        prove it knows the token by the challenge–response of
        :mod:`ccxd.protocol.challenge`, and never sees it; without a token,
        only a loopback server of the user's own is talked to.
        """
        from urllib.parse import urlsplit

        from ccxd.client.wsproto import HandshakeError

        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        ctx = None
        if secure:
            import ssl  # only here: it costs a tenth of ccxctl's start-up

            ctx = ssl.create_default_context(cafile=cafile)
        host = parts.hostname or "localhost"
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            raise TransportError(f"cannot connect to {url}: bad port") from None
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        dialer = _Dialer(url, host, port, ctx, parts.netloc, resource)
        try:
            if token:
                proto, local, proven = await dialer.login(token)
            else:
                (proto, local), proven = await dialer.dial(lambda _: []), False
        except HandshakeError as exc:
            code = exc.status
            if code is None:
                raise TransportError(f"cannot connect to {url}: {exc}") from None
            reason = {
                401: "authentication failed (token missing or wrong)",
                403: "forbidden",
                404: "HTTP 404: no WebSocket endpoint there (ccxd serves /ws)",
                429: "too many failed attempts; try later",
            }.get(code, f"HTTP {code}")
            raise TransportError(f"{url}: {reason}", denied=code in (401, 403, 429)) from None
        if not (proven or local):
            proto._abort()
            raise TransportError(
                f"refusing to talk to {url}: it let us in without proving it knows the token, so nothing "
                "was sent (only a loopback ccxd of your own may run with ws_auth = false)",
                untrusted=True,
            )
        return cls(proto, url)

    async def send(self, data: bytes) -> None:
        """Send one message as a text frame."""
        from ccxd.client.wsproto import OP_TEXT, encode_frame

        proto = self._proto
        if proto.error is not None:
            raise proto.error
        if proto.close_sent or proto.transport is None or proto.transport.is_closing():
            raise ConnectionError("websocket closed")
        proto.write(encode_frame(OP_TEXT, data))
        await proto.drain()

    async def messages(self) -> AsyncIterator[Message]:
        """Yield messages until the connection closes (binary payloads may be bytearrays)."""
        proto = self._proto
        queue = proto.messages
        while await proto.next_batch():
            while queue:
                yield queue.popleft()
                proto.resume()

    async def close(self) -> None:
        """Close the WebSocket (1000) and wait briefly for the server to hang up."""
        from ccxd.client.wsproto import OP_CLOSE, close_payload, encode_frame

        proto = self._proto
        if proto.transport is None:
            return
        if not proto.close_sent and not proto.transport.is_closing():
            proto.close_sent = True
            proto.ended = True
            proto.write(encode_frame(OP_CLOSE, close_payload(1000)))
            proto.resume()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await asyncio.shield(proto.lost)
        proto.transport.close()


class _Dialer:
    """Opens WebSocket connections to one URL: a TCP connection, its checks, the opening handshake."""

    def __init__(
        self, url: str, host: str, port: int, ctx: ssl.SSLContext | None, netloc: str, resource: str
    ) -> None:
        self.url, self.host, self.port, self.ctx = url, host, port, ctx
        self.netloc, self.resource = netloc, resource

    async def dial(
        self, headers: Callable[[bool], list[tuple[str, str]]]
    ) -> tuple[_WsProtocol, bool]:
        """One opened connection, and whether it is a loopback one of the user's own.

        ``headers(local)`` gives the request's extra headers once that is known.
        Raises HandshakeError for an answer other than 101, TransportError otherwise.
        """
        from ccxd import trust
        from ccxd.client.wsproto import HandshakeError, handshake_request, new_key

        key = new_key()
        loop = asyncio.get_running_loop()
        proto: _WsProtocol | None = None
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT):
                transport, proto = await loop.create_connection(
                    lambda: _WsProtocol(key, _MAX_MESSAGE),
                    self.host,
                    self.port,
                    ssl=self.ctx,
                    server_hostname=self.host if self.ctx is not None else None,
                )
                # Before the first byte: is the other end of a loopback connection ours?
                sockname = transport.get_extra_info("sockname")
                peername = transport.get_extra_info("peername")
                if sockname is None or peername is None:  # reset already (a daemon going away)
                    raise ConnectionResetError("the connection was reset as it opened")
                local = trust.check_tcp_peer(sockname[:2], peername[:2], self.url)
                proto.write(handshake_request(self.netloc, self.resource, key, headers(local)))
                await proto.opened
        except HandshakeError:
            if proto is not None:
                proto._abort()
            raise
        except trust.Untrusted as exc:
            if proto is not None:
                proto._abort()
            raise TransportError(str(exc), untrusted=True) from None
        except (OSError, TimeoutError) as exc:
            if proto is not None:
                proto._abort()
            refused = isinstance(exc, ConnectionRefusedError)
            raise TransportError(f"cannot connect to {self.url}: {exc}", not_running=refused) from None
        return proto, local

    async def login(self, token: str) -> tuple[_WsProtocol, bool, bool]:
        """Connect and authenticate: (connection, loopback and ours, the server proved the token).

        A loopback server of the user's own gets the token as a bearer header (one
        round trip, and older daemons work); any other must first prove it knows
        the token by the challenge–response, and never sees it.
        """
        import hmac

        from ccxd.client.wsproto import HandshakeError
        from ccxd.protocol import WS_CLIENT_NONCE, WS_CLIENT_PROOF, WS_SERVER_NONCE, WS_SERVER_PROOF
        from ccxd.protocol.challenge import accept_proof, client_proof, server_proof

        nonce = os.urandom(16).hex()
        bearer: list[bool] = []

        def first(local: bool) -> list[tuple[str, str]]:
            if local:
                bearer.append(True)
                return [("Authorization", f"Bearer {token}")]
            return [(WS_CLIENT_NONCE, nonce)]

        try:
            proto, local = await self.dial(first)
            return proto, local, bool(bearer)  # without a bearer: let in unasked, proven only if ours
        except HandshakeError as exc:
            if exc.status != 401 or bearer:
                raise
            theirs = exc.headers.get(WS_SERVER_NONCE.lower(), [])
            proofs = exc.headers.get(WS_SERVER_PROOF.lower(), [])
        secret = token.encode("utf-8")
        if len(theirs) != 1 or len(proofs) != 1:
            raise TransportError(
                f"refusing to talk to {self.url}: it did not prove it knows the token (it is not ccxd, or "
                "a ccxd older than this client), so the token was not sent",
                untrusted=True,
            )
        server_nonce = theirs[0]
        if not hmac.compare_digest(proofs[0], server_proof(secret, nonce, server_nonce)):
            raise TransportError(
                f"{self.url}: authentication failed (the server does not know this token: "
                "the token is wrong, or it is not your ccxd)",
                denied=True,
            )
        proof = client_proof(secret, server_nonce, nonce)
        headers = [(WS_CLIENT_NONCE, nonce), (WS_SERVER_NONCE, server_nonce), (WS_CLIENT_PROOF, proof)]
        proto, local = await self.dial(lambda _: headers)
        accepted = proto.response_headers.get(WS_SERVER_PROOF.lower(), [])
        expected = accept_proof(secret, nonce, server_nonce)
        if len(accepted) != 1 or not hmac.compare_digest(accepted[0], expected):
            proto._abort()
            raise TransportError(
                f"refusing to talk to {self.url}: the server that let us in did not prove it knows the "
                "token, so nothing was sent",
                untrusted=True,
            )
        return proto, local, True


async def open_transport(target: str, token: str | None, cafile: str | None = None) -> Transport:
    """Open ``target``: a socket path, ``unix:PATH``, or a ``ws://``/``wss://`` URL (:mod:`.urls`)."""
    from ccxd.client.urls import BadAddress, parse_address

    try:
        address = parse_address(target)
    except BadAddress as exc:
        raise TransportError(str(exc)) from None
    if address.kind == "ws":
        return await WebSocketTransport.open(address.where, token, cafile)
    return await UnixTransport.open(Path(address.where))
