"""The blocking client: one Unix-socket connection, no asyncio, on :class:`~ccxd.client.core.ClientCore`.

``ccxctl run`` uses it so that starting a short job costs little more than
starting Python (importing asyncio and typer would cost more than the job): the
benchmark compares ``ccxctl run true`` with ``python3 -c pass``.  Importing it
imports neither asyncio nor the async client.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, Struct

from ccxd.client.core import ClientCore
from ccxd.client.errors import ClientError, ConnectionLost, DaemonNotRunning, UntrustedDaemon
from ccxd.protocol import Reply
from ccxd.trust import Untrusted, check_socket_dir, check_unix_peer

__all__ = ["BlockingConnection"]

_READ = 64 * 1024  # under glibc's mmap threshold: a bigger recv buffer is an mmap per read


class BlockingConnection:
    """One connection: send requests, read messages one by one, or make a whole call.

    Raises :class:`DaemonNotRunning`, :class:`UntrustedDaemon`, or
    :class:`ClientError` (the socket cannot be used) when connecting, and
    :class:`ConnectionLost` once connected; ``os_error`` holds the system's error
    when there was one.
    """

    def __init__(self, path: Path, timeout: float | None = None) -> None:
        """Connect, once :mod:`ccxd.trust` says the socket is the user's daemon.

        ``timeout`` bounds each read and write, in seconds.
        """
        self.path = path
        self.core = ClientCore()
        self._buf = b""
        try:
            where = check_socket_dir(path)
        except Untrusted as exc:
            raise UntrustedDaemon(str(exc)) from None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(where))
            check_unix_peer(self._sock, str(path))
        except Untrusted as exc:
            self._sock.close()
            raise UntrustedDaemon(str(exc)) from None
        except OSError as exc:
            self._sock.close()
            raise _not_connected(path, exc) from None

    def send(self, method: str, params: Struct | None = None, result_type: Any = None) -> int:
        """Send a request; return its id (its reply is matched by ``self.core.answer``)."""
        req_id, data = self.core.request(method, params, result_type=result_type)
        try:
            self._sock.sendall(data + b"\n")
        except OSError as exc:
            raise _lost(self._refusal() or self._lost(exc), exc) from None
        return req_id

    def call(self, method: str, params: Struct | None = None, result_type: Any = None) -> Any:
        """Send a request and return its result (other messages meanwhile are dropped).

        Raises :class:`~ccxd.client.errors.RemoteError` for an error reply.
        """
        req_id = self.send(method, params, result_type)
        while True:
            item = self.next_message()
            if item is None:
                raise ConnectionLost("the daemon closed the connection")
            assert not isinstance(item, int)
            msg = item[1]
            if msg.id is None and msg.error is not UNSET:
                raise ClientError(msg.error.message)  # turned away (max_connections, no descriptors)
            if msg.id != req_id:
                continue
            answer = self.core.answer(msg)
            assert answer is not None
            if answer.error is not None:
                raise answer.error
            return answer.result

    def _refusal(self) -> str | None:
        """The daemon's one-line refusal (out of descriptors, max_connections), if it sent one.

        Our request then fails with EPIPE before the refusal is read.
        """
        try:
            data = self._buf + self._sock.recv(_READ, socket.MSG_DONTWAIT)
            reply = self.core.envelope(data.split(b"\n", 1)[0])
        except (OSError, msgspec.DecodeError):
            return None
        if reply.id is None and reply.error is not UNSET:
            return reply.error.message
        return None

    def next_message(self, wakeup_fd: int | None = None) -> tuple[bytes, Reply] | int | None:
        """The next (raw line, decoded envelope); None when the daemon closed.

        With ``wakeup_fd`` (a pipe given to :func:`signal.set_wakeup_fd`), a
        signal returns its number instead of raising inside the read, so no byte
        already received is ever lost to an interrupt.
        """
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                try:
                    return line, self.core.envelope(line)
                except msgspec.DecodeError:
                    raise ConnectionLost(
                        f"ccxd at {self.path} sent something that is not its protocol: {line[:60]!r}"
                    ) from None
            if wakeup_fd is not None:
                ready, _, _ = select.select([self._sock.fileno(), wakeup_fd], [], [])
                if wakeup_fd in ready:
                    signals = os.read(wakeup_fd, 64)
                    if signals:
                        return signals[-1]
                    continue
            try:
                data = self._sock.recv(_READ)
            except OSError as exc:
                raise _lost(self._lost(exc), exc) from None
            if not data:
                return None
            self._buf += data

    def _lost(self, exc: OSError) -> str:
        return f"lost the connection to ccxd at {self.path}: {exc.strerror or exc}"

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


def _lost(message: str, exc: OSError) -> ConnectionLost:
    err = ConnectionLost(message)
    err.os_error = exc
    return err


def _not_connected(path: Path, exc: OSError) -> ClientError:
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
