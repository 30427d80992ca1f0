"""How the client reaches a daemon: a Unix socket or a WebSocket URL.

Both transports carry the same JSON-RPC messages; each yields whole messages
(text for JSON, bytes for binary output frames on a WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from ccxd.transports.framing import LineFramer

__all__ = ["Message", "Transport", "UnixTransport", "WebSocketTransport", "open_transport"]

_READ_SIZE = 256 * 1024


class TransportError(Exception):
    """The transport could not be opened; ``not_running`` when nothing listens."""

    def __init__(self, message: str, *, not_running: bool = False, denied: bool = False) -> None:
        super().__init__(message)
        self.not_running = not_running
        self.denied = denied


Message = tuple[bool, bytes]
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


class UnixTransport:
    """Newline-delimited JSON over a Unix socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: Path) -> None:
        self._reader = reader
        self._writer = writer
        self.description = f"unix:{path}"

    @classmethod
    async def open(cls, path: Path) -> UnixTransport:
        """Connect to the socket at ``path``."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(path), limit=_READ_SIZE)
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
        return cls(reader, writer, path)

    async def send(self, data: bytes) -> None:
        """Send one message."""
        self._writer.write(data + b"\n")
        await self._writer.drain()

    async def messages(self) -> AsyncIterator[Message]:
        """Yield each line as it arrives."""
        framer = LineFramer(1 << 62)
        while True:
            data = await self._reader.read(_READ_SIZE)
            if not data:
                return
            for line in framer.feed(data):
                assert isinstance(line, bytes)
                yield False, line

    async def close(self) -> None:
        """Close the socket."""
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class WebSocketTransport:
    """JSON-RPC over a WebSocket (``ws://`` or ``wss://``), authenticated by a bearer token."""

    def __init__(self, ws: object, url: str) -> None:
        self._ws = ws
        self.description = url

    @classmethod
    async def open(cls, url: str, token: str | None, cafile: str | None = None) -> WebSocketTransport:
        """Connect and authenticate."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        headers = {"Authorization": f"Bearer {token}"} if token else None
        ctx = None
        if url.startswith("wss://"):
            import ssl  # only here: it costs a tenth of ccxctl's start-up

            ctx = ssl.create_default_context(cafile=cafile)
        try:
            ws = await connect(
                url,
                additional_headers=headers,
                ssl=ctx,
                max_size=None,  # the daemon bounds what it sends; output chunks are ≤ 64 KiB
                compression=None,
                open_timeout=10,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            reason = {
                401: "authentication failed (token missing or wrong)",
                403: "forbidden",
                429: "too many failed attempts; try later",
            }.get(code, f"HTTP {code}")
            raise TransportError(f"{url}: {reason}", denied=code in (401, 403, 429)) from None
        except (OSError, WebSocketException, TimeoutError) as exc:
            refused = isinstance(exc, ConnectionRefusedError)
            raise TransportError(f"cannot connect to {url}: {exc}", not_running=refused) from None
        return cls(ws, url)

    async def send(self, data: bytes) -> None:
        """Send one message as a text frame."""
        await self._ws.send(data.decode("utf-8"))  # type: ignore[attr-defined]

    async def messages(self) -> AsyncIterator[Message]:
        """Yield frames until the connection closes."""
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in self._ws:  # type: ignore[attr-defined]
                if isinstance(frame, bytes):
                    yield True, frame
                else:
                    yield False, frame.encode("utf-8")
        except ConnectionClosed as exc:
            raise ConnectionError(f"websocket closed: {exc}") from None

    async def close(self) -> None:
        """Close the WebSocket."""
        await self._ws.close()  # type: ignore[attr-defined]


async def open_transport(target: str, token: str | None, cafile: str | None = None) -> Transport:
    """Open ``target``: a socket path, ``unix:PATH``, or a ``ws://``/``wss://`` URL."""
    if target.startswith(("ws://", "wss://")):
        return await WebSocketTransport.open(target, token, cafile)
    path = target[5:] if target.startswith("unix:") else target
    if path.startswith("//"):
        path = path[2:]
    return await UnixTransport.open(Path(path))
