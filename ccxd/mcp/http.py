"""MCP's streamable HTTP transport in the daemon: the ASGI app behind ``/mcp`` on the WebSocket port.

:mod:`ccxd.transports.http_front` reads and authenticates each request; this
runs the SDK's :class:`StreamableHTTPSessionManager` (sessions by
``Mcp-Session-Id``, JSON-RPC answered as SSE streams, ``GET`` streams,
``DELETE``) over the same tools as ``ccxctl mcp``.  The tools reach the
dispatcher as any client does, over one connection to the daemon's own Unix
socket, so every rule of the protocol applies to them unchanged; a job runs in
the client's root (``roots/list``) when it names no directory.  The Origin
and Host checks are the front's (``ws_allowed_origins``), not the SDK's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from ccxd.client import Client, connect
from ccxd.mcp.tools import JobTools, build_server

__all__ = ["McpHttpApp"]

log = logging.getLogger("ccxd.mcp.http")

_IDLE_SESSION = 3600.0  # seconds a session with no request in flight is kept
_MAX_SESSIONS = 1024  # each holds ~85 KiB for up to an hour; clients that never DELETE pile them up


class McpHttpApp:
    """The ``/mcp`` ASGI app and its session manager's lifetime (:meth:`start`, :meth:`stop`).

    At most ``max_sessions`` sessions (and never over 1024) are open at once; a new one beyond gets 503.
    """

    def __init__(self, socket_path: Path, max_body: int, max_sessions: int = _MAX_SESSIONS) -> None:
        async def opener() -> Client:
            return await connect(socket_path)

        self.tools = JobTools(opener, default_cwd=None, client_roots=True)
        server = build_server(self.tools)
        self.manager = StreamableHTTPSessionManager(
            app=server._lowlevel_server,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            session_idle_timeout=_IDLE_SESSION,
            max_request_body_size=max_body,
            max_sessions=min(max_sessions, _MAX_SESSIONS),
        )
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        """Run the session manager (its task group lives as long as the daemon serves)."""
        ready = asyncio.get_running_loop().create_future()

        async def run() -> None:
            async with self.manager.run():
                ready.set_result(None)
                await self._stop.wait()

        self._task = asyncio.get_running_loop().create_task(run())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            self._task.result()  # raises why it could not start

    async def stop(self) -> None:
        """End every session and close the tools' connection (jobs keep running)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5.0)
        await self.tools.close()

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        """Answer one authenticated ``/mcp`` request."""
        await self.manager.handle_request(scope, receive, send)
