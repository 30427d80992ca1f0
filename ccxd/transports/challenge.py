"""The WebSocket challenge–response; it lives in :mod:`ccxd.protocol.challenge`, which both ends import."""

from __future__ import annotations

from ccxd.protocol.challenge import (
    NONCE_LIFETIME,
    accept_proof,
    client_proof,
    is_nonce,
    issue_server_nonce,
    server_nonce_time,
    server_proof,
)

__all__ = [
    "NONCE_LIFETIME",
    "accept_proof",
    "client_proof",
    "is_nonce",
    "issue_server_nonce",
    "server_nonce_time",
    "server_proof",
]
