"""The WebSocket challenge–response: each side proves it knows the token without sending it (no I/O).

ccxd's own clients use it with every server they cannot check is the user's
own (anything but loopback on Linux, see :mod:`ccxd.trust`), so such a server,
if it is not ccxd, learns nothing from them:

1. The client asks with a fresh nonce ``Ccxd-Client-Nonce: CN`` and no token.
2. The server answers 401 with its nonce ``Ccxd-Server-Nonce: SN`` and
   ``Ccxd-Server-Proof: HMAC(token, "ccxd-server-proof" CN SN)``.  The client
   checks that proof before it sends anything else: a server without the token
   cannot make it.
3. The client opens a second connection with CN, SN and
   ``Ccxd-Client-Proof: HMAC(token, "ccxd-client-proof" SN CN)``; the server
   upgrades and adds ``Ccxd-Server-Proof: HMAC(token, "ccxd-server-accept" CN SN)``
   to its 101 answer, so the client knows the same server let it in.

SN carries the time it was made and a tag (an HMAC under the token over that
time, random bytes and CN), so the server keeps no state per challenge; a SN
is good for :data:`NONCE_LIFETIME` seconds and for one login.  Every proof is
labelled with its role, so no answer can be replayed as another.  The exchange
proves the token, not the channel: across a network only TLS (``wss://``)
keeps a man in the middle out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Callable

__all__ = [
    "NONCE_LIFETIME",
    "accept_proof",
    "client_proof",
    "is_nonce",
    "issue_server_nonce",
    "server_nonce_time",
    "server_proof",
]

NONCE_LIFETIME = 30.0
"""Seconds a server nonce stays usable: one round trip, with room for a slow network."""

_NONCE = re.compile(r"[0-9a-f]{32,128}")
_STAMP = struct.Struct("!Q")
_TAG_BYTES = 16


def is_nonce(value: str) -> bool:
    """True for a well-formed nonce (32 to 128 lower-case hex digits)."""
    return _NONCE.fullmatch(value) is not None


def _mac(token: bytes, label: bytes, *parts: str) -> str:
    msg = label + b"".join(b"\0" + p.encode("ascii") for p in parts)
    return hmac.new(token, msg, hashlib.sha256).hexdigest()


def server_proof(token: bytes, client_nonce: str, server_nonce: str) -> str:
    """What the server answers a challenge with (step 2)."""
    return _mac(token, b"ccxd-server-proof", client_nonce, server_nonce)


def client_proof(token: bytes, server_nonce: str, client_nonce: str) -> str:
    """What the client logs in with (step 3)."""
    return _mac(token, b"ccxd-client-proof", server_nonce, client_nonce)


def accept_proof(token: bytes, client_nonce: str, server_nonce: str) -> str:
    """What the server's 101 answer carries (step 3)."""
    return _mac(token, b"ccxd-server-accept", client_nonce, server_nonce)


def _tag(token: bytes, stamp_and_random: str, client_nonce: str) -> str:
    return _mac(token, b"ccxd-server-nonce", stamp_and_random, client_nonce)[: 2 * _TAG_BYTES]


def issue_server_nonce(token: bytes, client_nonce: str, now: float, rng: Callable[[int], bytes]) -> str:
    """A server nonce for ``client_nonce``, made at ``now`` (seconds on the server's clock)."""
    body = (_STAMP.pack(max(0, int(now * 1000))) + rng(16)).hex()
    return body + _tag(token, body, client_nonce)


def server_nonce_time(token: bytes, client_nonce: str, server_nonce: str) -> float | None:
    """When the server made ``server_nonce`` for ``client_nonce``; None if it did not."""
    if len(server_nonce) != 2 * (_STAMP.size + 16 + _TAG_BYTES) or not is_nonce(server_nonce):
        return None
    body, tag = server_nonce[: -2 * _TAG_BYTES], server_nonce[-2 * _TAG_BYTES :]
    if not hmac.compare_digest(tag, _tag(token, body, client_nonce)):
        return None
    millis: int = _STAMP.unpack(bytes.fromhex(body[: 2 * _STAMP.size]))[0]
    return millis / 1000
