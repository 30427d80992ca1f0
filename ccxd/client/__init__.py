"""The async client library: ``from ccxd.client import connect``.

Example::

    async with await connect() as client:
        async for event in client.run("make test", timeout=600):
            ...
"""

from ccxd.client.connection import (
    AccessDenied,
    Client,
    ClientError,
    DaemonNotRunning,
    Event,
    InvalidAddress,
    RemoteError,
    UntrustedDaemon,
    connect,
    default_socket,
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
