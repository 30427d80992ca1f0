"""The dashboard's side of the WebSocket port: its GET routes and the cookie login of its upgrades.

:class:`UiFront` is what :mod:`ccxd.transports.websocket` asks, in the opening
handshake, before its token check: ``respond`` answers ``/``, ``/ui`` and
everything below (pages, files, the one-time login), ``upgrade`` admits a
WebSocket upgrade that carries a live session cookie from the page's own
origin.  Everything else (bearer tokens, the challenge, foreign origins) stays
with :class:`ccxd.access.auth.Authenticator`.
"""

from __future__ import annotations

import html
import http
import logging
import os
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

from websockets.http11 import Request, Response

from ccxd.access.auth import Verdict
from ccxd.ui.guard import COOKIE_NAME, allowed_hosts, host_allowed, same_origin, session_cookie
from ccxd.ui.login import Logins
from ccxd.ui.routes import StaticFiles, security_headers, simple_response

__all__ = ["LOGIN_PATH", "UI_PATH", "UiFront"]

log = logging.getLogger("ccxd.ui")

UI_PATH = "/ui/"
LOGIN_PATH = "/ui/login"
_STATIC_PREFIX = "/ui/static/"
_HTML = "text/html; charset=utf-8"


def _one(request: Request, name: str) -> str | None:
    values = request.headers.get_all(name)
    return values[0] if len(values) == 1 else None


class UiFront:
    """Routes the dashboard's requests and admits its cookie-authenticated upgrades."""

    def __init__(
        self, tls: bool, host_names: Iterable[str] = (), origins: Iterable[str] = (), owner: int | None = None
    ) -> None:
        self.tls = tls
        self.owner = os.getuid() if owner is None else owner
        """The uid a local browser must run as to log in: the daemon's own."""
        self.logins = Logins()
        self.files = StaticFiles()
        self.hosts = allowed_hosts(host_names, origins)

    def serves(self, path: str) -> bool:
        """True for the paths the dashboard answers (``/``, ``/ui`` and below)."""
        return path in ("/", "/ui") or path.startswith(UI_PATH)

    def respond(self, request: Request, who: Callable[[], tuple[int | None, bool]]) -> Response:
        """The answer to a GET of one of the dashboard's paths (see :meth:`serves`).

        ``who()`` tells the local uid that opened the connection (None: remote or
        unknown) and whether the peer is this machine; asked only to log in.
        """
        split = urlsplit(request.path)
        path = split.path
        host = _one(request, "Host")
        if host is None or not host_allowed(host, self.hosts):
            log.warning(
                "refused a dashboard request for Host %r (not this daemon's name)", (host or "")[:100]
            )
            return simple_response(
                http.HTTPStatus.MISDIRECTED_REQUEST, b"unknown host\n", "text/plain", security_headers(None)
            )
        extra = security_headers(host.strip().lower())
        if path in ("/", "/ui"):
            return simple_response(http.HTTPStatus.FOUND, b"", _HTML, [*extra, ("Location", UI_PATH)])
        if path == LOGIN_PATH:
            return self._login(dict(parse_qsl(split.query)).get("t", ""), who(), extra)
        if path == UI_PATH:
            return self.files.get("index.html", _one(request, "If-None-Match"), extra)
        if path.startswith(_STATIC_PREFIX):
            return self.files.get(path[len(_STATIC_PREFIX) :], _one(request, "If-None-Match"), extra)
        return simple_response(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", extra)

    def _login(self, secret: str, who: tuple[int | None, bool], extra: list[tuple[str, str]]) -> Response:
        """Trade a one-time secret for the session cookie, and leave the address bar without it.

        Another local user can read the URL off the browser's command line: a local
        login counts only from the daemon's own uid, and a refused one does not spend it.
        """
        uid, local = who
        if uid != self.owner and (uid is not None or local):
            log.warning(
                "refused a dashboard login from %s: only uid %d may log in from this machine",
                f"uid {uid}" if uid is not None else "an unidentified local user",
                self.owner,
            )
            page = _page("Login refused", "Only the user who runs ccxd can log in from this machine.")
            headers = [*extra, ("Cache-Control", "no-store")]
            return simple_response(http.HTTPStatus.FORBIDDEN, page, _HTML, headers)
        session = self.logins.redeem(secret, uid) if secret else None
        if session is None:
            log.warning("refused a dashboard login: the link was used already, expired or never made")
            page = _page(
                "Login link not valid",
                "This login link was used already or has expired (links work once, within a minute). "
                "Run <code>ccxctl ui</code> for a new one.",
            )
            headers = [*extra, ("Cache-Control", "no-store")]
            return simple_response(http.HTTPStatus.FORBIDDEN, page, _HTML, headers)
        log.info("dashboard login (uid %s)", uid)
        cookie = f"{COOKIE_NAME}={session.cookie}; Path=/; HttpOnly; SameSite=Strict"
        if self.tls:
            cookie += "; Secure"
        headers = [*extra, ("Set-Cookie", cookie), ("Location", UI_PATH), ("Cache-Control", "no-store")]
        return simple_response(http.HTTPStatus.SEE_OTHER, b"", _HTML, headers)

    def upgrade(self, request: Request, uid: int | None) -> Verdict | None:
        """Admit an upgrade by its session cookie; None when it has no cookie to judge (token rules apply).

        The cookie is taken only with the page's own ``Origin`` and an allowed ``Host``:
        from any other origin the upgrade goes on to the token check, which refuses
        foreign origins (403).
        """
        cookie = session_cookie(request.headers)
        if cookie is None:
            return None
        host = _one(request, "Host")
        if not (host_allowed(host, self.hosts) and same_origin(_one(request, "Origin"), host, self.tls)):
            return None
        if not self.logins.valid(cookie, uid):
            return Verdict(
                401,
                "the dashboard session has ended; run ccxctl ui to log in again\n",
                log=f"refused a dashboard upgrade (uid {uid}): no such session (expired, or restarted)",
            )
        return Verdict(0, via="cookie")


def _page(title: str, body_html: str) -> bytes:
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} — ccxd</title>"
        '<link rel=stylesheet href="/ui/static/app.css"><link rel=icon href="data:,">'
        f"<main class=message><h1>{html.escape(title)}</h1><p>{body_html}</p></main>"
    ).encode()
