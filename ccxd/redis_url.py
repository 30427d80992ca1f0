"""Sentinel URLs taken apart (no I/O).

``redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/SERVICE[?db=N&sentinel_username=…&sentinel_password=…]``
(``rediss+sentinel://`` for TLS to the sentinels and the primary): the hosts are
the sentinels, SERVICE the name they monitor the primary by, USER:PASSWORD the
primary's ACL user, ``sentinel_username``/``sentinel_password`` the sentinels' own.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["SENTINEL_SCHEMES", "SentinelURL", "is_sentinel", "parse_sentinel"]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
_QUERY_KEYS = ("db", "sentinel_username", "sentinel_password")


class SentinelURL(NamedTuple):
    """What a sentinel URL names."""

    sentinels: list[tuple[str, int]]
    service: str
    username: str | None
    password: str | None
    sentinel_username: str | None
    sentinel_password: str | None
    db: int
    tls: bool

    def describe(self) -> str:
        """``sentinel SERVICE via HOST:PORT,…`` (no secrets), for logs and ``status``."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"sentinel {self.service} via {hosts}"


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names a primary through Redis Sentinel."""
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def parse_sentinel(url: str) -> SentinelURL:
    """Take a sentinel URL apart; ValueError says what is wrong (without the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise ValueError("expected redis+sentinel:// or rediss+sentinel://")
    parts = urlsplit("redis://" + rest)  # urlsplit knows no '+' schemes' netlocs on every version
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if parts.fragment:
        raise ValueError("a fragment (#…) has no meaning here")
    sentinels = [_host_port(h) for h in hostlist.split(",")] if hostlist else []
    if not sentinels:
        raise ValueError("no sentinel host:port given")
    service = unquote(parts.path.strip("/"))
    if not service or "/" in service:
        raise ValueError("expected the monitored service's name as the path (…/SERVICE)")
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _QUERY_KEYS:
            raise ValueError(f"unknown option {key!r} (known: {', '.join(_QUERY_KEYS)})")
        query[key] = value
    db = query.get("db", "0")
    if not db.isdigit():
        raise ValueError(f"db must be a number, not {db!r}")
    return SentinelURL(
        sentinels=sentinels,
        service=service,
        username=unquote(user) or None if at else None,
        password=unquote(password) or None if colon else None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        db=int(db),
        tls=scheme.lower() == "rediss+sentinel",
    )


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"sentinel {text!r} has no host")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel {text!r} has no valid port")
    return host, int(port)
