"""What can go wrong talking to a daemon: one set of errors for the async and the blocking client."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own, without importing typing: ccxctl run imports this module
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "AccessDenied",
    "ClientError",
    "ConnectionLost",
    "DaemonNotRunning",
    "InvalidAddress",
    "RemoteError",
    "UntrustedDaemon",
]


class ClientError(Exception):
    """Something went wrong talking to the daemon."""

    os_error: OSError | None = None
    """The system's error behind it, when there was one (the blocking client sets it)."""


class DaemonNotRunning(ClientError):
    """Nothing is listening where the daemon should be."""


class AccessDenied(ClientError):
    """The daemon refused us: token missing or wrong, a foreign origin, or too many failures."""


class UntrustedDaemon(ClientError):
    """We refused the server: nothing shows it is the user's own ccxd (see :mod:`ccxd.trust`).

    Nothing was sent to it: no request, no environment, no token.
    """


class InvalidAddress(ClientError, ValueError):
    """The daemon address is none the client understands (see :mod:`ccxd.client.urls`)."""


class ConnectionLost(ClientError):
    """The connection dropped while a call was in flight (it may or may not have run)."""


class RemoteError(ClientError):
    """The daemon answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data
