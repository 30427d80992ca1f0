"""Whether a browser's request may use the dashboard: Host, Origin and the session cookie (no I/O).

* **Host** (DNS rebinding): a page of ``evil.example`` whose name is made to
  resolve to 127.0.0.1 reaches the port with ``Host: evil.example``.  Only an
  IP literal, a loopback name, this machine's own names or the host of an
  origin in ``ws_allowed_origins`` are served.
* **Origin** (CSRF): a WebSocket is not bound by the same-origin policy, and
  ``SameSite`` does not tell ports apart (``http://127.0.0.1:9999`` is the
  same *site* as the daemon), so the browser would send the cookie with a
  foreign page's upgrade.  The cookie counts only when ``Origin`` is exactly
  the page's own origin, the scheme and ``Host`` of the request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from ccxd.access.auth import HeaderView
from ccxd.addresses import is_loopback_host

__all__ = ["COOKIE_NAME", "allowed_hosts", "host_allowed", "same_origin", "session_cookie"]

COOKIE_NAME = "ccxd_session"
_HOST_CHARS = re.compile(r"[a-z0-9.\-_:\[\]%]{1,255}")


def allowed_hosts(names: Iterable[str], origins: Iterable[str]) -> frozenset[str]:
    """The host names served besides IP literals and loopback: ``names`` and the hosts of ``origins``."""
    hosts = {n.strip().lower().rstrip(".") for n in names if n.strip()}
    for origin in origins:
        host = urlsplit(origin.strip()).hostname
        if host:
            hosts.add(host.lower())
    return frozenset(hosts)


def _hostname(host: str) -> str | None:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), or None when malformed."""
    host = host.strip().lower()
    if not _HOST_CHARS.fullmatch(host):
        return None
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (host[end + 1 :] and not host[end + 1 :].startswith(":")):
            return None
        return host[1:end]
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".")


def host_allowed(host: str | None, names: frozenset[str]) -> bool:
    """True when a request for ``Host: host`` may be served (see the module's note on rebinding)."""
    if host is None:
        return False
    name = _hostname(host)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True  # an address cannot be rebound: the browser reached what it names
    except ValueError:
        pass
    return is_loopback_host(name) or name in names


def same_origin(origin: str | None, host: str | None, tls: bool) -> bool:
    """True when ``origin`` is the origin of a page served as ``Host: host`` on this port."""
    if origin is None or host is None:
        return False
    scheme = "https" if tls else "http"
    return origin.strip().rstrip("/").lower() == f"{scheme}://{host.strip().lower()}"


def session_cookie(headers: HeaderView) -> str | None:
    """The value of our session cookie in the request, if it has one.

    Parsed by hand: cookies ignore ports, so other services on the same host add
    theirs, and one that ``http.cookies`` finds malformed must not hide ours.
    """
    for value in headers.get_all("Cookie"):
        for pair in value.split(";"):
            name, sep, found = pair.strip().partition("=")
            if sep and name == COOKIE_NAME and found:
                return found.strip('"')
    return None
