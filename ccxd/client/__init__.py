"""The client library: ``from ccxd.client import connect``.

Example::

    async with await connect() as client:
        async for event in client.run("make test", timeout=600):
            ...

Layers: :mod:`.core` (the protocol without I/O), :mod:`.connection` (asyncio,
over :mod:`.transports`), :mod:`.blocking` (plain sockets, for ``ccxctl``'s
fast start) and :mod:`.sync` (the async client on a thread, for scripts).
Names are imported on first use, so that the blocking client's users never
import asyncio.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own, without importing typing (ccxctl run's start)
if TYPE_CHECKING:
    from typing import Any

    from ccxd.client.connection import Client, Event, connect, default_socket
    from ccxd.client.errors import (
        AccessDenied,
        ClientError,
        DaemonNotRunning,
        InvalidAddress,
        RemoteError,
        UntrustedDaemon,
    )

__all__ = [
    "AccessDenied",
    "Client",
    "ClientError",
    "DaemonNotRunning",
    "Event",
    "InvalidAddress",
    "RemoteError",
    "UntrustedDaemon",
    "connect",
    "default_socket",
]

_ERRORS = {
    "AccessDenied",
    "ClientError",
    "DaemonNotRunning",
    "InvalidAddress",
    "RemoteError",
    "UntrustedDaemon",
}


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (errors without asyncio, the rest with the async client)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module("ccxd.client.errors" if name in _ERRORS else "ccxd.client.connection")
    value = getattr(module, name)
    globals()[name] = value
    return value
