"""The optional metrics endpoint: ``GET /metrics`` on a loopback address or a Unix socket, Prometheus text.

Deliberately tiny (one request per connection, no keep-alive, 8 KiB of request
head at most): it serves counters, nothing else, and only to this machine.
Every local user can reach a loopback port, so there the WebSocket token is
required (``Authorization: Bearer``, with the WebSocket's failure limits); a
Unix socket (``unix:PATH``) is made 0600 in a private directory and needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ccxd.addresses import Listen, parse_listen
from ccxd.hooks.prometheus import CONTENT_TYPE

if TYPE_CHECKING:
    from ccxd.access.auth import Authenticator

__all__ = ["Listen", "MetricsServer", "parse_listen"]

log = logging.getLogger("ccxd.hooks")

_HEAD_LIMIT = 8192
_READ_TIMEOUT = 5.0


class _Headers:
    """Request headers as :class:`ccxd.access.auth.HeaderView` wants them."""

    def __init__(self, lines: list[bytes]) -> None:
        self.pairs = []
        for line in lines:
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                self.pairs.append((name.strip().lower(), value.strip()))

    def get_all(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self.pairs if k == key]


class MetricsServer:
    """Serves ``body()`` at ``/metrics``; on TCP only to requests ``auth`` lets in."""

    def __init__(
        self, listen: str, body: Callable[[], Awaitable[str]], auth: Authenticator | None = None
    ) -> None:
        where = parse_listen(listen)
        self.host, self.port, self.path = where.host, where.port, where.path
        if self.path is None and auth is None:
            raise ValueError("metrics on a TCP port need the token (an Authenticator)")
        self.body = body
        self.auth = auth
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind and serve; ``port`` is the real port afterwards (for port 0).

        Raises OSError (PermissionError for a Unix socket in a directory others control).
        """
        if self.path is not None:
            sock = _bind_private_unix(self.path)
            self.server = await asyncio.start_unix_server(self._serve, sock=sock)
            log.info("metrics on unix:%s (GET /metrics, mode 0600)", self.path)
            return
        self.server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics (Authorization: Bearer TOKEN)", self.host, self.port)

    @property
    def url(self) -> str:
        """Where to scrape."""
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
        if self.path is not None:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)

    def _refusal(self, writer: asyncio.StreamWriter, lines: list[bytes]) -> tuple[str, str, str] | None:
        """(status, text, extra headers) refusing a TCP request without the token; None to serve it."""
        if self.auth is None or self.path is not None:
            return None
        from ccxd.trust import local_peer_uid

        ours, peer = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
        addr, uid = "?", None
        if isinstance(ours, tuple) and isinstance(peer, tuple):
            addr = str(peer[0])
            uid = local_peer_uid((str(ours[0]), int(ours[1])), (addr, int(peer[1])))
        verdict = self.auth.check_bearer(addr, _Headers(lines), uid)
        if verdict.status == 0:
            return None
        if verdict.log is not None:
            log.log(logging.WARNING if verdict.warn else logging.INFO, "metrics: %s", verdict.log)
        reason = http.HTTPStatus(verdict.status).phrase
        extra = "".join(f"{k}: {v}\r\n" for k, v in verdict.headers)
        return f"{verdict.status} {reason}", verdict.body, extra

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            lines = head.split(b"\r\n")
            parts = lines[0].split()
            extra = ""
            if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
                status, text = "405 Method Not Allowed", "only GET /metrics\n"
            elif parts[1].split(b"?", 1)[0] != b"/metrics":
                status, text = "404 Not Found", "not found; try /metrics\n"
            elif (refused := self._refusal(writer, lines[1:])) is not None:
                status, text, extra = refused
            else:
                status, text = "200 OK", await self.body()
            data = text.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n{extra}Cache-Control: no-store\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            )
            if parts[0] != b"HEAD":
                writer.write(data)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("metrics endpoint")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _bind_private_unix(path: Path) -> socket.socket:
    """A listening socket at ``path`` (mode 0600) in a directory only we (and root) control."""
    from ccxd.paths import ensure_private_dir
    from ccxd.sockets import bind_unix_socket
    from ccxd.trust import Untrusted, check_socket_dir

    if not path.parent.exists():
        ensure_private_dir(path.parent)
    try:
        check_socket_dir(path)
    except Untrusted as exc:
        raise PermissionError(str(exc).replace("refusing", "not serving metrics at", 1)) from None
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise PermissionError(f"{path} exists and is not a socket")
        os.unlink(path)  # a stale socket of an earlier run
    return bind_unix_socket(path)
