"""Addresses the daemon listens on: which hosts are loopback, and ``metrics_listen``'s form (no I/O).

Below the transports and the metrics endpoint that serve on them, so that the
config check (:mod:`ccxd.config`) can refuse a bad address without importing either.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["Listen", "is_loopback_host", "parse_listen"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_UNIX = "unix:"


def is_loopback_host(host: str) -> bool:
    """True for an address (or the name ``localhost``) only this machine can reach."""
    name = host.strip().lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


class Listen(NamedTuple):
    """Where metrics are served: ``path`` (a Unix socket) or ``host``:``port``."""

    host: str = ""
    port: int = 0
    path: Path | None = None


def parse_listen(text: str, runtime_dir: Path | None = None) -> Listen:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) or ``unix:PATH`` → :class:`Listen` (no I/O).

    ``unix:`` alone means ``metrics.sock`` in ``runtime_dir``.  ValueError when
    invalid, not loopback, or a relative path.
    """
    if text.startswith(_UNIX):
        where = text[len(_UNIX) :]
        if not where:
            if runtime_dir is None:
                from ccxd.paths import runtime_dir as default_runtime_dir

                runtime_dir = default_runtime_dir()
            return Listen(path=runtime_dir / "metrics.sock")
        if not os.path.isabs(where):
            raise ValueError(f"metrics_listen = {text!r}: a Unix socket needs an absolute path (unix:/run/…)")
        return Listen(path=Path(where))
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(
            f"metrics_listen = {text!r}: expected HOST:PORT (e.g. 127.0.0.1:9464) or unix:PATH"
        )
    host = host.strip("[]") or "127.0.0.1"
    if not is_loopback_host(host):
        raise ValueError(f"metrics_listen = {text!r}: only loopback addresses are allowed (a local endpoint)")
    return Listen(host, int(port_text))
