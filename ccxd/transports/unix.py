"""The Unix-socket front-end: newline-delimited JSON, private to the daemon's user.

The socket lives in a 0700 directory and is itself 0600; on top of that the
peer's uid (SO_PEERCRED) must be the daemon's own or root.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct
from pathlib import Path

from ccxd.protocol import ErrorCode, encode, error
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.transports.framing import LineFramer, TooLarge

__all__ = ["UnixServer", "bind_unix_socket", "peer_credentials"]

log = logging.getLogger("ccxd.transports")

_HIGH_WATER = 1024 * 1024
_MAX_PENDING = 64  # requests read ahead of dispatch before reading pauses


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind a listening socket at ``path`` with mode 0600 from the first instant."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _UnixPeer(asyncio.Protocol):
    def __init__(self, server: UnixServer) -> None:
        self.server = server
        self.framer = LineFramer(server.max_message_bytes)
        self.pending: collections.deque[bytes] = collections.deque()
        self.wakeup: asyncio.Event = asyncio.Event()
        self.writable: asyncio.Event = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.task: asyncio.Task[None] | None = None
        self._closing = False
        self._eof = False
        self._reading_paused = False

    # -- Sink -----------------------------------------------------------------

    def write(self, message: bytes) -> None:
        if self.transport is not None and not self._closing:
            self.transport.writelines((message, b"\n"))

    async def drain(self) -> None:
        if not self.writable.is_set():
            await self.writable.wait()

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=_HIGH_WATER)  # type: ignore[union-attr]
        sock = transport.get_extra_info("socket")
        pid, uid, _gid = peer_credentials(sock)
        if uid not in (os.getuid(), 0):
            log.warning("refused Unix connection from uid %d (pid %d)", uid, pid)
            msg = f"permission denied: uid {uid} may not use this daemon"
            self.transport.write(encode(error(None, ErrorCode.UNAUTHORIZED, msg)) + b"\n")  # type: ignore[union-attr]
            self._closing = True
            # Half-close and drain what the peer already sent: closing with unread
            # data would reset the connection and the peer might never see the error.
            transport.write_eof()  # type: ignore[attr-defined]
            asyncio.get_running_loop().call_later(5.0, transport.abort)  # type: ignore[attr-defined]
            return
        self.conn = Connection(self, peer=f"uid={uid} pid={pid}", transport="unix")
        self.conn.on_idle = self.wakeup.set
        self.server.connections.add(self)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        if self.conn is None:
            return  # a refused peer: discard until it hangs up
        for item in self.framer.feed(data):
            if isinstance(item, TooLarge):
                self.write(
                    encode(
                        error(
                            None,
                            ErrorCode.INVALID_REQUEST,
                            f"message too large: the limit is {item.limit} bytes",
                            {"limit": item.limit},
                        )
                    )
                )
            else:
                self.pending.append(item)
        if self.pending:
            self.wakeup.set()
            if len(self.pending) >= _MAX_PENDING and not self._reading_paused:
                self._reading_paused = True
                assert self.transport is not None
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.conn is None:
            return False  # a refused peer hung up: close
        # The peer sent everything it will send (e.g. `nc -U` after its stdin ends):
        # keep our side open until its replies and followed jobs are done, then close.
        self._eof = True
        self.wakeup.set()
        return True

    def _done_with_peer(self) -> bool:
        return self._eof and not self.pending and not (self.conn and self.conn.subscriptions)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.writable.set()
        self.server.connections.discard(self)
        if self.conn is not None:
            self.conn.closed()
        if self.task is not None:
            self.task.cancel()

    async def _serve(self) -> None:
        assert self.conn is not None
        assert self.transport is not None
        dispatcher = self.server.dispatcher
        while not self._closing:
            if self._done_with_peer():
                self.close()
                return
            if not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            raw = self.pending.popleft()
            if self._reading_paused and len(self.pending) < _MAX_PENDING // 2:
                self._reading_paused = False
                self.transport.resume_reading()
            reply = await dispatcher.handle(raw, self.conn)
            if reply is not None:
                self.write(reply)
                # A client that sends but never reads must not grow our buffers.
                await self.drain()


class UnixServer:
    """Accepts Unix-socket clients and feeds their messages to the dispatcher."""

    def __init__(self, dispatcher: Dispatcher, max_message_bytes: int) -> None:
        self.dispatcher = dispatcher
        self.max_message_bytes = max_message_bytes
        self.connections: set[_UnixPeer] = set()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        """Serve on an already bound, listening socket."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _UnixPeer(self), sock=sock)

    async def stop(self) -> None:
        """Stop accepting and drop every connection."""
        if self._server is not None:
            self._server.close()
        for peer in list(self.connections):
            peer.close()
        if self._server is not None:
            await self._server.wait_closed()
