"""The blocking client: one Unix-socket connection, no asyncio, no msgspec.

``ccxctl run`` uses it so that starting a short job costs little more than
starting Python (the benchmark compares ``ccxctl run true`` with ``python3 -c
pass``): importing asyncio, msgspec or the protocol's Structs would cost more
than the job.  So messages are plain dicts, JSON read and written through
Python's own C accelerator (:mod:`ccxd.client.jsonlite`), with the names of
:mod:`ccxd.wire`; binary output frames (asked for with ``binary``) come as
bytes, split from the stream by :mod:`ccxd.client.unixproto`.
"""

from __future__ import annotations

import _socket  # socket.py turns its constants into enums at import: milliseconds at every start
import errno
import os
import select

from ccxd import wire
from ccxd.client import jsonlite
from ccxd.client.errors import ClientError, ConnectionLost, DaemonNotRunning, RemoteError, UntrustedDaemon
from ccxd.client.unixproto import MessageReader, UnixProtocolError
from ccxd.trust import Untrusted, check_socket_path, check_unix_peer

TYPE_CHECKING = False  # typing's own, without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    Message = dict[str, Any]
    """One JSON-RPC message, decoded."""

__all__ = ["BlockingConnection"]


class BlockingConnection:
    """One connection: send requests, read messages one by one, or make a whole call.

    Raises :class:`DaemonNotRunning`, :class:`UntrustedDaemon`, or
    :class:`ClientError` (the socket cannot be used) when connecting, and
    :class:`ConnectionLost` once connected; ``os_error`` holds the system's error
    when there was one.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = None) -> None:
        """Connect, once :mod:`ccxd.trust` says the socket is the user's daemon.

        ``timeout`` bounds each read and write, in seconds.
        """
        self.path = os.fspath(path)
        self._ids = 0
        self._reader = MessageReader()
        try:
            where = check_socket_path(self.path)
        except Untrusted as exc:
            raise UntrustedDaemon(str(exc)) from None
        self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(where)
            check_unix_peer(self._sock, self.path)
        except Untrusted as exc:
            self._sock.close()
            raise UntrustedDaemon(str(exc)) from None
        except OSError as exc:
            self._sock.close()
            raise _not_connected(self.path, exc) from None

    def send(self, method: str, params: Mapping[str, object] | None = None) -> int:
        """Send a request; return its id (its reply carries it)."""
        self._ids += 1
        params = dict(params or {})
        request = {"jsonrpc": wire.JSONRPC_VERSION, "method": method, "params": params, "id": self._ids}
        try:
            self._sock.sendall(jsonlite.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise _lost(self._refusal() or self._lost(exc), exc) from None
        return self._ids

    def call(self, method: str, params: Mapping[str, object] | None = None) -> Any:
        """Send a request and return its result as plain JSON (other messages meanwhile are dropped).

        Raises :class:`~ccxd.client.errors.RemoteError` for an error reply.
        """
        req_id = self.send(method, params)
        while True:
            msg = self.next_message()
            if msg is None:
                raise ConnectionLost("the daemon closed the connection")
            if not isinstance(msg, dict):
                continue  # output of a job followed on this connection
            if msg.get("id") is None and "error" in msg:
                raise ClientError(msg["error"]["message"])  # turned away (max_connections, no descriptors)
            if msg.get("id") != req_id:
                continue
            if "error" in msg:
                raise _remote_error(msg)
            return msg.get("result")

    def _refusal(self) -> str | None:
        """The daemon's one-line refusal (out of descriptors, max_connections), if it sent one.

        Our request then fails with EPIPE before the refusal is read.
        """
        try:  # noqa: SIM105 - contextlib is one more import at every ccxctl start
            self._reader.received(self._sock.recv_into(self._reader.buffer(), 0, _socket.MSG_DONTWAIT))
        except (OSError, UnixProtocolError):
            pass
        for binary, payload in self._reader.messages:
            if binary:
                continue
            try:
                msg = jsonlite.loads(payload)
                if msg.get("id") is None and "error" in msg:
                    return str(msg["error"]["message"])
            except (ValueError, AttributeError, TypeError, KeyError):
                return None
        return None

    def next_message(self, wakeup_fd: int | None = None) -> Message | bytes | bytearray | int | None:
        """The next message: a JSON one decoded, a binary output frame as bytes; None when the daemon closed.

        With ``wakeup_fd`` (a pipe given to :func:`signal.set_wakeup_fd`), a
        signal returns its number instead of raising inside the read, so no byte
        already received is ever lost to an interrupt.
        """
        messages = self._reader.messages
        while not messages:
            if wakeup_fd is not None:
                ready, _, _ = select.select([self._sock.fileno(), wakeup_fd], [], [])
                if wakeup_fd in ready:
                    signals = os.read(wakeup_fd, 64)
                    if signals:
                        return signals[-1]
                    continue
            try:
                n = self._sock.recv_into(self._reader.buffer())
            except OSError as exc:
                raise _lost(self._lost(exc), exc) from None
            if not n:
                return None
            try:
                self._reader.received(n)
            except UnixProtocolError as exc:
                lost = f"ccxd at {self.path} sent something that is not its protocol: {exc}"
                raise ConnectionLost(lost) from None
        binary, payload = messages.popleft()
        if binary:
            return payload
        try:
            msg = jsonlite.loads(payload)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            raise ConnectionLost(
                f"ccxd at {self.path} sent something that is not its protocol: {bytes(payload[:60])!r}"
            )
        return msg

    def _lost(self, exc: OSError) -> str:
        return f"lost the connection to ccxd at {self.path}: {exc.strerror or exc}"

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


def _remote_error(msg: Message) -> RemoteError:
    """The :class:`RemoteError` of an error reply."""
    err = msg["error"]
    return RemoteError(err["code"], err["message"], err.get("data"))


def _lost(message: str, exc: OSError) -> ConnectionLost:
    err = ConnectionLost(message)
    err.os_error = exc
    return err


def _not_connected(path: str, exc: OSError) -> ClientError:
    """The error for a socket that could not be connected to."""
    err: ClientError
    if isinstance(exc, FileNotFoundError):
        err = DaemonNotRunning(f"ccxd is not running (no socket at {path})")
    elif isinstance(exc, ConnectionRefusedError):
        err = DaemonNotRunning(f"ccxd is not running (nothing listens on {path})")
    elif exc.errno in (errno.ENOTSOCK, errno.ENOTDIR):
        err = DaemonNotRunning(f"ccxd is not running ({path} is not a socket)")
    else:
        err = ClientError(f"cannot connect to ccxd at {path}: {exc.strerror or exc}")
    err.os_error = exc
    return err
