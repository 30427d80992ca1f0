"""A minimal blocking JSON-RPC connection over the Unix socket.

``ccxctl run`` uses it instead of asyncio so that starting a short job costs
little more than starting Python: the benchmark compares ``ccxctl run true``
with ``python3 -c pass``.  Messages are still the protocol's Structs.
"""

from __future__ import annotations

import errno
import itertools
import os
import select
import socket
from pathlib import Path

import msgspec
from msgspec import UNSET, Struct

from ccxd.protocol import EmptyParams, Reply, Request
from ccxd.trust import Untrusted, check_socket_dir, check_unix_peer

__all__ = ["BlockingConnection", "CannotConnect", "ConnectionLost", "NotRunning", "Untrusted"]

_READ = 256 * 1024


class NotRunning(Exception):
    """No daemon listens on the socket."""


class CannotConnect(Exception):
    """The socket is there but cannot be used (permission denied, …)."""


class ConnectionLost(Exception):
    """The connection broke, or the daemon sent something that is not its protocol."""


class BlockingConnection:
    """One connection; send requests, iterate incoming messages."""

    def __init__(self, path: Path) -> None:
        """Connect, once :mod:`ccxd.trust` says the socket is the user's daemon (else Untrusted)."""
        self.path = path
        where = check_socket_dir(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(str(where))
            check_unix_peer(self._sock, str(path))
        except FileNotFoundError:
            self._sock.close()
            raise NotRunning(f"ccxd is not running (no socket at {path})") from None
        except ConnectionRefusedError:
            self._sock.close()
            raise NotRunning(f"ccxd is not running (nothing listens on {path})") from None
        except Untrusted:
            self._sock.close()
            raise
        except OSError as exc:
            self._sock.close()
            if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR):
                raise NotRunning(f"ccxd is not running ({path} is not a socket)") from None
            raise CannotConnect(f"cannot connect to ccxd at {path}: {exc.strerror or exc}") from None
        self._ids = itertools.count(1)
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Reply)
        self._buf = b""

    def send(self, method: str, params: Struct | None = None) -> int:
        """Send a request; return its id."""
        req_id = next(self._ids)
        body = Request(
            method=method,
            jsonrpc="2.0",
            params=msgspec.Raw(self._encoder.encode(params if params is not None else EmptyParams())),
            id=req_id,
        )
        try:
            self._sock.sendall(self._encoder.encode(body) + b"\n")
        except OSError as exc:
            raise ConnectionLost(self._refusal() or self._lost(exc)) from None
        return req_id

    def _refusal(self) -> str | None:
        """The daemon's one-line refusal (out of descriptors, max_connections), if it sent one.

        Our request then fails with EPIPE before the refusal is read.
        """
        try:
            data = self._buf + self._sock.recv(_READ, socket.MSG_DONTWAIT)
            reply = self._decoder.decode(data.split(b"\n", 1)[0])
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
                    return line, self._decoder.decode(line)
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
                raise ConnectionLost(self._lost(exc)) from None
            if not data:
                return None
            self._buf += data

    def _lost(self, exc: OSError) -> str:
        return f"lost the connection to ccxd at {self.path}: {exc.strerror or exc}"

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()
