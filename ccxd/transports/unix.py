"""The Unix-socket front-end: newline-delimited JSON, private to the daemon's user.

A subscriber that asked for ``binary`` output gets binary output frames
between the lines, each as a NUL byte, its length (u32, little endian) and the
frame (:func:`ccxd.protocol.encode_output_frame`): a JSON line never holds a
NUL, so the two cannot be confused, and the output goes out as the job wrote it.

The socket lives in a 0700 directory and is itself 0600; on top of that the
peer's uid (SO_PEERCRED) must be the daemon's own or root.

ccxd accepts connections itself rather than through ``loop.create_unix_server``
so that running out of file descriptors is seen: a spare descriptor is kept
open, and when ``accept`` fails with EMFILE the spare is given up for a moment
to accept each waiting client, tell it so in one JSON-RPC error line and close
it, with a log line.  Existing connections go on; once descriptors are free
again, new clients are served as before.  A client beyond ``max_connections``
is told so the same way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import resource
import socket
import struct
import time
from collections.abc import Sequence

from ccxd.protocol import ErrorCode, encode, error
from ccxd.protocol.framing import LineFramer, TooLarge
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.sockets import bind_unix_socket, peer_credentials

__all__ = ["UnixServer", "bind_unix_socket", "peer_credentials"]

log = logging.getLogger("ccxd.transports")

_HIGH_WATER = 1024 * 1024
_MAX_PENDING = 64  # requests read ahead of dispatch before reading pauses
_GATHER_MAX = 64 * 1024  # bytes of lines gathered for one send before they go out at once
_BINARY_HEAD = struct.Struct("<BI")  # a binary record: NUL, then the frame's length


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
        self._out: list[bytes] | None = None
        self._out_bytes = 0

    # -- Sink -----------------------------------------------------------------

    def write(self, message: bytes) -> None:
        # Lines written in one turn of the loop go out in one send: with many jobs
        # on one connection, a send (and a wake-up of the client) per line cost more
        # than the lines.  The send follows within the same turn's I/O poll.
        if self.transport is None or self._closing:
            return
        if self._out is None:
            self._out = [message, b"\n"]
            self._out_bytes = len(message)
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._out += (message, b"\n")
            self._out_bytes += len(message)
        if self._out_bytes >= _GATHER_MAX:
            # A subscriber replaying a backlog writes without yielding: the transport must
            # see it now, or drain() would never push back and the turn would gather it all.
            self._flush()

    def write_binary(self, message: bytes) -> None:
        self.write_binary_parts((message,))

    def write_binary_parts(self, parts: Sequence[bytes]) -> None:
        # Gathered with the lines of the same turn, in order; the parts are not copied.
        if self.transport is None or self._closing:
            return
        size = 0
        for part in parts:
            size += len(part)
        head = _BINARY_HEAD.pack(0, size)
        if self._out is None:
            self._out = [head, *parts]
            self._out_bytes = size
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._out += (head, *parts)
            self._out_bytes += size
        if self._out_bytes >= _GATHER_MAX:
            self._flush()

    def _flush(self) -> None:
        out, self._out = self._out, None
        self._out_bytes = 0
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    async def drain(self) -> None:
        if not self.writable.is_set():
            await self.writable.wait()

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._flush()
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
            self._refuse(ErrorCode.UNAUTHORIZED, f"permission denied: uid {uid} may not use this daemon")
            return
        limit = self.server.max_connections
        if len(self.server.connections) >= limit:
            self.server.count_full(pid)
            self._refuse(
                ErrorCode.INTERNAL_ERROR,
                f"ccxd already serves {limit} connections (max_connections): connection refused, retry later",
            )
            return
        self.conn = Connection(self, peer=f"uid={uid} pid={pid}", transport="unix")
        self.conn.on_idle = self.wakeup.set
        self.server.connections.add(self)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def _refuse(self, code: ErrorCode, msg: str) -> None:
        """Tell the peer why in one JSON-RPC error line, and close."""
        assert self.transport is not None
        self.transport.write(encode(error(None, code, msg)) + b"\n")
        self._closing = True
        # Half-close and drain what the peer already sent: closing with unread
        # data would reset the connection and the peer might never see the error.
        self.transport.write_eof()
        asyncio.get_running_loop().call_later(5.0, self.transport.abort)

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


_ACCEPT_BATCH = 64  # connections accepted per wake-up, so a flood cannot starve the loop
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_OUT_OF_FDS = encode(
    error(None, ErrorCode.INTERNAL_ERROR, "ccxd is out of file descriptors: connection refused, retry later")
) + b"\n"
_LOG_EVERY = 10.0  # seconds between "refused" log lines while it lasts


class UnixServer:
    """Accepts Unix-socket clients and feeds their messages to the dispatcher."""

    def __init__(self, dispatcher: Dispatcher, max_message_bytes: int, max_connections: int = 4096) -> None:
        self.dispatcher = dispatcher
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self.connections: set[_UnixPeer] = set()
        self.refused = 0
        """Clients refused for lack of file descriptors, since start."""
        self.refused_full = 0
        """Clients refused because ``max_connections`` were connected, since start."""
        self._last_full_log = 0.0
        self._unlogged_full = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spare: int | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self._last_log = 0.0
        self._unlogged = 0

    async def start(self, sock: socket.socket) -> None:
        """Serve on an already bound, listening socket."""
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._sock = sock
        self._spare = _open_spare()
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._sock is not None
        assert self._loop is not None
        for _ in range(_ACCEPT_BATCH):
            try:
                client, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._refuse_waiting(exc)
                    return
                if exc.errno == errno.ECONNABORTED:
                    continue
                log.warning("accepting a Unix-socket client failed: %s", exc)
                return
            task = self._loop.create_task(self._adopt(client))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, client: socket.socket) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(lambda: _UnixPeer(self), client)
        except OSError as exc:
            if exc.errno not in _EXHAUSTED:
                log.warning("could not serve a Unix-socket client: %s", exc)
                client.close()
                return
            # The loop duplicates the socket; with no descriptor left for that, turn it away.
            _turn_away(client)
            self._count_refused(1, exc)

    def _refuse_waiting(self, exc: OSError) -> None:
        """Out of descriptors: free the spare one and use it to turn waiting clients away."""
        assert self._sock is not None
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        refused = 0
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                break
            _turn_away(client)
            refused += 1
        self._spare = _open_spare()
        self._count_refused(refused, exc)
        if refused == 0 and self._loop is not None:
            # Not even the spare could be had: stop spinning on the ready socket for a moment.
            self._loop.remove_reader(self._sock.fileno())
            self._loop.call_later(0.1, self._loop.add_reader, self._sock.fileno(), self._accept)

    def _count_refused(self, refused: int, exc: OSError) -> None:
        self.refused += refused
        self._unlogged += refused
        now = time.monotonic()
        if self._unlogged and now - self._last_log >= _LOG_EVERY:
            limit = _fd_limit()
            log.error(
                "out of file descriptors (%s; limit %s): refused %d new connection(s); "
                "existing connections go on",
                os.strerror(exc.errno or 0),
                limit,
                self._unlogged,
            )
            self._last_log = now
            self._unlogged = 0

    def count_full(self, pid: int) -> None:
        """A client was refused for ``max_connections``: count it, log now and then."""
        self.refused_full += 1
        self._unlogged_full += 1
        now = time.monotonic()
        if now - self._last_full_log >= _LOG_EVERY:
            log.warning(
                "refused %d Unix-socket client(s) (the last pid %d): %d connected, max_connections is %d",
                self._unlogged_full,
                pid,
                len(self.connections),
                self.max_connections,
            )
            self._last_full_log = now
            self._unlogged_full = 0

    async def stop(self) -> None:
        """Stop accepting and drop every connection."""
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        for task in list(self._adopting):
            task.cancel()
        for peer in list(self.connections):
            peer.close()


def _turn_away(client: socket.socket) -> None:
    """Tell a client in one line that there is no room for it, and close."""
    with client, contextlib.suppress(OSError):
        client.send(_OUT_OF_FDS, socket.MSG_DONTWAIT)
        # Unread input at close would reset the connection before the client reads the line.
        for _ in range(16):
            if not client.recv(65536, socket.MSG_DONTWAIT):
                break


def _open_spare() -> int | None:
    try:
        return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _fd_limit() -> str:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return str(soft)
