"""The dashboard's sans-I/O checks: one-time logins, sessions, Host, Origin, cookies, static files."""

from __future__ import annotations

import http

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from ccxd.ui.front import UiFront
from ccxd.ui.guard import allowed_hosts, host_allowed, same_origin, session_cookie
from ccxd.ui.login import Logins
from ccxd.ui.routes import STATIC_DIR, StaticFiles


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_login_secret_works_once_and_only_in_time() -> None:
    clock = Clock()
    logins = Logins(clock=clock)
    secret = logins.issue()
    session = logins.redeem(secret, uid=1000)
    assert session is not None
    assert logins.redeem(secret, uid=1000) is None  # second use refused
    late = logins.issue()
    clock.now += 61
    assert logins.redeem(late, uid=1000) is None  # expired
    assert logins.redeem("made-up", uid=1000) is None


def test_a_session_is_bound_to_the_uid_that_logged_in_and_expires() -> None:
    clock = Clock()
    logins = Logins(clock=clock, session_ttl=100)
    session = logins.redeem(logins.issue(), uid=1000)
    assert session is not None
    assert logins.valid(session.cookie, 1000)
    assert not logins.valid(session.cookie, 1001)  # another local user holding the cookie
    assert not logins.valid(session.cookie + "x", 1000)
    clock.now += 101
    assert not logins.valid(session.cookie, 1000)


def test_secrets_flooding_in_stay_bounded() -> None:
    logins = Logins()
    first = logins.issue()
    for _ in range(3000):
        logins.issue()
    assert len(logins._logins) <= 1024
    assert logins.redeem(first, None) is None  # the oldest was dropped


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8003", True),
        ("[::1]:8003", True),
        ("localhost:8003", True),
        ("10.1.2.3", True),
        ("myhost:8003", True),
        ("dash.example.org", True),
        ("evil.example:8003", False),  # DNS rebinding
        ("127.0.0.1:8003; x", False),
        ("", False),
        ("a b", False),
    ],
)
def test_hosts_served(host: str, ok: bool) -> None:
    names = allowed_hosts(["myhost"], ["https://dash.example.org"])
    assert host_allowed(host, names) is ok


def test_same_origin_is_scheme_and_host_exactly() -> None:
    assert same_origin("http://127.0.0.1:8003", "127.0.0.1:8003", tls=False)
    assert not same_origin("http://127.0.0.1:9999", "127.0.0.1:8003", tls=False)
    assert not same_origin("https://127.0.0.1:8003", "127.0.0.1:8003", tls=False)
    assert same_origin("https://h:8003", "h:8003", tls=True)
    assert not same_origin(None, "127.0.0.1:8003", tls=False)
    assert not same_origin("null", "127.0.0.1:8003", tls=False)


def test_session_cookie_is_read_among_others() -> None:
    headers = Headers([("Cookie", "a=1; ccxd_session=abc; b=2")])
    assert session_cookie(headers) == "abc"
    assert session_cookie(Headers([("Cookie", "a=1")])) is None
    # Another service's cookie that http.cookies calls malformed does not hide ours.
    assert session_cookie(Headers([("Cookie", 'x="unterminated; we{ird}=1; ccxd_session=abc')])) == "abc"
    assert session_cookie(Headers()) is None


def _request(path: str, **headers: str) -> Request:
    return Request(path, Headers([(k.replace("_", "-"), v) for k, v in headers.items()]))


def test_login_sets_an_httponly_strict_cookie_and_redirects_without_the_secret() -> None:
    front = UiFront(tls=False, owner=1000)
    secret = front.logins.issue()
    response = front.respond(_request(f"/ui/login?t={secret}", Host="127.0.0.1:8003"), lambda: (1000, True))
    assert response.status_code == http.HTTPStatus.SEE_OTHER
    assert response.headers["Location"] == "/ui/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    again = front.respond(_request(f"/ui/login?t={secret}", Host="127.0.0.1:8003"), lambda: (1000, True))
    assert again.status_code == http.HTTPStatus.FORBIDDEN
    assert "Set-Cookie" not in again.headers


def test_login_counts_only_from_the_daemons_own_uid_or_another_machine() -> None:
    front = UiFront(tls=False, owner=1000)
    secret = front.logins.issue()
    login = _request(f"/ui/login?t={secret}", Host="127.0.0.1:8003")
    for who in ((1001, True), (None, True), (0, False)):  # another user; a local one unidentified
        refused = front.respond(login, lambda who=who: who)
        assert refused.status_code == http.HTTPStatus.FORBIDDEN and "Set-Cookie" not in refused.headers
        assert b"Only the user who runs ccxd" in refused.body
    remote = front.respond(login, lambda: (None, False))  # not spent by the refusals
    assert remote.status_code == http.HTTPStatus.SEE_OTHER and "Set-Cookie" in remote.headers


def test_cookie_upgrade_needs_the_pages_own_origin() -> None:
    front = UiFront(tls=False)
    session = front.logins.redeem(front.logins.issue(), 1000)
    assert session is not None
    cookie = f"ccxd_session={session.cookie}"
    own = _request("/ws", Host="127.0.0.1:8003", Origin="http://127.0.0.1:8003", Cookie=cookie)
    verdict = front.upgrade(own, 1000)
    assert verdict is not None and verdict.status == 0 and verdict.via == "cookie"
    foreign = _request("/ws", Host="127.0.0.1:8003", Origin="http://127.0.0.1:9999", Cookie=cookie)
    assert front.upgrade(foreign, 1000) is None  # left to the token check, which refuses the origin
    no_origin = _request("/ws", Host="127.0.0.1:8003", Cookie=cookie)
    assert front.upgrade(no_origin, 1000) is None
    rebound = _request("/ws", Host="evil.example:8003", Origin="http://evil.example:8003", Cookie=cookie)
    assert front.upgrade(rebound, 1000) is None
    ended = _request("/ws", Host="127.0.0.1:8003", Origin="http://127.0.0.1:8003", Cookie="ccxd_session=x")
    refused = front.upgrade(ended, 1000)
    assert refused is not None and refused.status == 401


def test_pages_carry_a_strict_csp_and_refuse_foreign_hosts() -> None:
    front = UiFront(tls=False)
    page = front.respond(_request("/ui/", Host="127.0.0.1:8003"), lambda: (None, False))
    assert page.status_code == 200
    assert b'<script type="module" src="/ui/static/app.js">' in page.body
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "connect-src 'self' ws://127.0.0.1:8003 wss://127.0.0.1:8003" in csp
    assert (
        front.respond(_request("/", Host="127.0.0.1:8003"), lambda: (None, False)).headers["Location"]
        == "/ui/"
    )
    rebound = front.respond(_request("/ui/", Host="evil.example:8003"), lambda: (None, False))
    assert rebound.status_code == http.HTTPStatus.MISDIRECTED_REQUEST
    # Refusals carry the same headers: a browser must not sniff or frame even an error.
    assert rebound.headers["X-Content-Type-Options"] == "nosniff"
    assert "connect-src 'self';" in rebound.headers["Content-Security-Policy"]


def test_static_files_cache_and_refuse_escapes() -> None:
    files = StaticFiles()
    app = files.get("app.js", None, [])
    assert app.status_code == 200 and app.headers["Cache-Control"] == "no-cache"
    assert app.headers["Content-Type"].startswith("text/javascript")
    etag = app.headers["ETag"]
    assert files.get("app.js", etag, []).status_code == http.HTTPStatus.NOT_MODIFIED
    vendored = files.get("vendor/uplot-1.6.32/uPlot.esm.js", None, [])
    assert vendored.status_code == 200 and "immutable" in vendored.headers["Cache-Control"]
    for bad in (
        "../front.py",
        "vendor/../../login.py",
        "/etc/passwd",
        "/usr/share/doc/ccxd.txt",
        str(STATIC_DIR / "app.js"),
        ".hidden",
        "vendor/xterm-6.0.0/LICENSE",
    ):
        assert files.get(bad, None, []).status_code == 404, bad


def test_login_urls_name_the_host_a_client_used() -> None:
    from ccxctl.ui_cmd import login_url_for
    from ccxd.protocol import UiLoginUrl
    from ccxd.ui.methods import page_base

    assert page_base("ws://127.0.0.1:8003/ws") == "http://127.0.0.1:8003"
    assert page_base("wss://0.0.0.0:8443/ws") == "https://127.0.0.1:8443"  # a wildcard is not an address
    assert page_base("ws://[::1]:8003/ws") == "http://[::1]:8003"
    made = UiLoginUrl(url="http://127.0.0.1:8003/ui/login?t=S", path="/ui/login?t=S", expires_in=60)
    assert login_url_for(made, None) == made.url  # over the Unix socket
    assert login_url_for(made, "unix:/run/x.sock") == made.url
    assert login_url_for(made, "wss://build.example:8443/ws") == "https://build.example:8443/ui/login?t=S"
    assert login_url_for(made, "ws://localhost:8003") == "http://localhost:8003/ui/login?t=S"
