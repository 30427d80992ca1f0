"""The optional metrics endpoint: ``GET /metrics`` on a loopback address, Prometheus text.

Deliberately tiny (one request per connection, no keep-alive, 8 KiB of request
head at most): it serves counters, nothing else, and only to this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ccxd.hooks.prometheus import CONTENT_TYPE

__all__ = ["MetricsServer", "parse_listen"]

log = logging.getLogger("ccxd.hooks")

_HEAD_LIMIT = 8192
_READ_TIMEOUT = 5.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port); ValueError when invalid or not loopback."""
    from ccxd.transports.auth import is_loopback_host

    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"metrics_listen = {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    host = host.strip("[]") or "127.0.0.1"
    if not is_loopback_host(host):
        raise ValueError(f"metrics_listen = {text!r}: only loopback addresses are allowed (a local endpoint)")
    return host, int(port_text)


class MetricsServer:
    """Serves ``body()`` at ``/metrics``."""

    def __init__(self, listen: str, body: Callable[[], Awaitable[str]]) -> None:
        self.host, self.port = parse_listen(listen)
        self.body = body
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind and serve; ``port`` is the real port afterwards (for port 0)."""
        self.server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    @property
    def url(self) -> str:
        """Where to scrape."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
                status, text = "405 Method Not Allowed", "only GET /metrics\n"
            elif parts[1].split(b"?", 1)[0] != b"/metrics":
                status, text = "404 Not Found", "not found; try /metrics\n"
            else:
                status, text = "200 OK", await self.body()
            data = text.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
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
