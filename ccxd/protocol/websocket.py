"""The WebSocket front: endpoints, subprotocol and challenge headers, close codes, ``/health``."""

from __future__ import annotations

import enum
from typing import Final, Literal

from msgspec import Struct

__all__ = [
    "HEALTH_PATH",
    "WS_BEARER_PREFIX",
    "WS_CLIENT_NONCE",
    "WS_CLIENT_PROOF",
    "WS_PATHS",
    "WS_SERVER_NONCE",
    "WS_SERVER_PROOF",
    "WS_SUBPROTOCOL",
    "Health",
    "WsClose",
]

WS_PATHS: Final = ("/ws", "/ws/mcp")
"""WebSocket endpoints; ``/ws/mcp`` is cc_executor's name for the same service."""
HEALTH_PATH: Final = "/health"
"""Plain HTTP ``GET`` on the WebSocket port: :class:`Health`, no token needed."""
WS_SUBPROTOCOL: Final = "ccxd"
"""The subprotocol the server selects; browsers must offer it next to the bearer one."""
WS_BEARER_PREFIX: Final = "ccxd.bearer."
"""``Sec-WebSocket-Protocol: ccxd, ccxd.bearer.<token>``: the token for clients that cannot set headers."""
WS_CLIENT_NONCE: Final = "Ccxd-Client-Nonce"
"""Challenge–response (:mod:`ccxd.protocol.challenge`): the client's fresh nonce, in both requests."""
WS_SERVER_NONCE: Final = "Ccxd-Server-Nonce"
"""Challenge–response: the server's nonce, in its 401 answer and then in the client's second request."""
WS_SERVER_PROOF: Final = "Ccxd-Server-Proof"
"""Challenge–response: the server's HMAC proof that it knows the token, in its 401 and 101 answers."""
WS_CLIENT_PROOF: Final = "Ccxd-Client-Proof"
"""Challenge–response: the client's HMAC proof that it knows the token, in its second request."""


class WsClose(enum.IntEnum):
    """WebSocket close codes ccxd sends (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    """Idle timeout, or the client asked to close."""
    GOING_AWAY = 1001
    """The daemon is stopping."""
    POLICY = 1008
    """Refused by policy after the handshake (e.g. the connection limit)."""
    TOO_BIG = 1009
    """A message exceeded ``max_message_bytes``."""
    INTERNAL = 1011
    """A bug on the daemon's side."""


class Health(Struct):
    """``GET /health``: enough to tell the service is up, nothing secret."""

    status: Literal["healthy"]
    service: str
    version: str
    active_sessions: int
    """Open WebSocket connections."""
    uptime_seconds: float
