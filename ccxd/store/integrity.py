"""Seals on what the daemon will act on after reading it back from Redis (no I/O).

Redis is input, not authority: whoever else reaches the Redis (a shared server,
another user on a password-less port) can write any key.  So a record the
daemon would *run* when it reads it back — a waiting Claude retry attempt, the
usage-limit block — is stored next to an HMAC-SHA256 made with a key only the
daemon holds (``store.key`` in its private state directory, ``store/keyfile.py``).
A record whose MAC is missing or wrong is never acted on.

The MAC covers the exact bytes stored (a msgspec ``Raw`` body), so a record
stays valid across versions that add fields, and a ``context`` naming what the
bytes are and for which node, so a sealed record cannot stand in for another kind
or another node's.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["KEY_BYTES", "seal", "verify"]

KEY_BYTES = 32
"""Length of a store key (the HMAC-SHA256 block-size-safe length)."""


def _message(context: str, body: bytes) -> bytes:
    ctx = context.encode()
    return len(ctx).to_bytes(4, "big") + ctx + body


def seal(key: bytes, context: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``key``, bound to ``context`` (no I/O)."""
    return hmac.new(key, _message(context, body), hashlib.sha256).hexdigest()


def verify(key: bytes, context: str, body: bytes, mac: str) -> bool:
    """True when ``mac`` is :func:`seal`'s for ``body`` and ``context`` (constant time; no I/O)."""
    if not mac:
        return False
    return hmac.compare_digest(seal(key, context, body), mac)
