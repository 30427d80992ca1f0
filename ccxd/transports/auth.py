"""Who may open a WebSocket; it lives in :mod:`ccxd.access.auth`, below every front that checks requests."""

from __future__ import annotations

from ccxd.access.auth import (
    OK_NO_AUTH,
    Authenticator,
    FailureLimiter,
    HeaderView,
    LimitKey,
    Verdict,
    generate_token,
    is_loopback_host,
    limit_key,
    load_or_create_token,
    select_subprotocol,
)

__all__ = [
    "OK_NO_AUTH",
    "Authenticator",
    "FailureLimiter",
    "HeaderView",
    "LimitKey",
    "Verdict",
    "generate_token",
    "is_loopback_host",
    "limit_key",
    "load_or_create_token",
    "select_subprotocol",
]
