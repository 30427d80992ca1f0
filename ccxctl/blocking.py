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
from msgspec import Struct

from ccxd.protocol import EmptyParams, Reply, Request

__all__ = ["BlockingConnection", "NotRunning"]

_READ = 256 * 1024


class NotRunning(Exception):
    """No daemon listens on the socket."""


class BlockingConnection:
    """One connection; send requests, iterate incoming messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            self._sock.close()
            raise NotRunning(f"ccxd is not running (no daemon listens on {path})") from None
        except OSError as exc:
            self._sock.close()
            if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR):
                raise NotRunning(f"ccxd is not running ({path} is not a socket)") from None
            raise
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
        self._sock.sendall(self._encoder.encode(body) + b"\n")
        return req_id

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
                return line, self._decoder.decode(line)
            if wakeup_fd is not None:
                ready, _, _ = select.select([self._sock.fileno(), wakeup_fd], [], [])
                if wakeup_fd in ready:
                    signals = os.read(wakeup_fd, 64)
                    if signals:
                        return signals[-1]
                    continue
            data = self._sock.recv(_READ)
            if not data:
                return None
            self._buf += data

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()
