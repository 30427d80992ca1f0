"""Where a daemon is, from what a user typed: a socket path or a WebSocket URL (no I/O).

Accepted: a socket path, ``unix:PATH``, and ``ws://HOST[:PORT][/PATH]`` or
``wss://…``; a URL without a path gets the daemon's endpoint, ``/ws``.  Anything
else is refused with one line saying what was meant, before any connection.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from ccxd.protocol import WS_PATHS

__all__ = ["ACCEPTED", "BadAddress", "DaemonAddress", "parse_address"]

ACCEPTED = "a socket path, unix:PATH, or ws://HOST[:PORT][/ws] (wss:// with TLS)"
"""The forms :func:`parse_address` takes, as error messages name them."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9.:-]*[A-Za-z0-9\]]:\d+$")  # "buildhost:8003", "[::1]:8003"


class BadAddress(ValueError):
    """What the user gave is no daemon address; the message says what is wrong in one line."""


class DaemonAddress(NamedTuple):
    """A parsed address: ``kind`` "unix" with a socket path, or "ws" with a full URL."""

    kind: Literal["unix", "ws"]
    where: str


def parse_address(text: str) -> DaemonAddress:
    """The daemon address ``text`` names (no I/O); raises :class:`BadAddress`."""
    if not text.strip():
        raise BadAddress(f"an empty daemon address: expected {ACCEPTED}")
    if text.startswith("unix:"):
        path = text[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise BadAddress(f"{text!r} names no socket: expected unix:PATH")
        return DaemonAddress("unix", path)
    scheme = _SCHEME.match(text)
    if scheme is None:
        if _HOST_PORT.match(text):
            raise BadAddress(f"{text!r} is no socket path: did you mean ws://{text}{WS_PATHS[0]}?")
        return DaemonAddress("unix", text)
    name = scheme.group(1).lower()
    if name in ("http", "https"):
        secure = "wss" if name == "https" else "ws"
        raise BadAddress(f"{text}: use ws:// or wss:// (did you mean {_ws_url(secure, text)}?)")
    if name not in ("ws", "wss"):
        raise BadAddress(f"{text}: {name}:// is not a daemon address: expected {ACCEPTED}")
    return DaemonAddress("ws", _ws_url(name, text))


def _ws_url(scheme: str, text: str) -> str:
    """``text`` as a ``scheme`` URL, with the daemon's path when it has none; raises BadAddress."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BadAddress(f"{text}: {exc} (expected ws://HOST[:PORT][/ws])") from None
    if not parts.hostname:
        raise BadAddress(f"{text}: no host (expected ws://HOST[:PORT][/ws])")
    if parts.username is not None or parts.password is not None:
        raise BadAddress(f"{text}: a user or password in the URL is not supported (the token goes in a file)")
    if port == 0:
        raise BadAddress(f"{text}: port 0 (expected ws://HOST[:PORT][/ws])")
    path = parts.path if parts.path not in ("", "/") else WS_PATHS[0]
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))
