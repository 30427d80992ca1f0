"""WebSocket admission without I/O: tokens, origins, failure limits, start-up refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxd.access.auth import (
    Authenticator,
    FailureLimiter,
    generate_token,
    limit_key,
    load_or_create_token,
    select_subprotocol,
)
from ccxd.addresses import is_loopback_host
from ccxd.config import ConfigError, load

TOKEN = "t0k3n-" + "x" * 40


class Headers:
    """A minimal HeaderView: case-insensitive, several values per name."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = pairs

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k.lower() == key.lower()]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def auth(
    token: str | None = TOKEN, origins: tuple[str, ...] = (), clock: Clock | None = None
) -> Authenticator:
    return Authenticator(token, origins, FailureLimiter(5, 60, 120, clock=clock or Clock()))


# -- tokens -------------------------------------------------------------------


def test_header_and_subprotocol_tokens_are_accepted():
    a = auth()
    assert a.check("1.2.3.4", "/ws", Headers(("Authorization", f"Bearer {TOKEN}"))).status == 0
    assert a.check("1.2.3.4", "/ws", Headers(("authorization", f"bearer   {TOKEN}"))).via == "header"
    sub = Headers(("Sec-WebSocket-Protocol", f"ccxd, ccxd.bearer.{TOKEN}"))
    verdict = a.check("1.2.3.4", "/ws", sub)
    assert verdict.status == 0 and verdict.via == "subprotocol"


def test_missing_wrong_and_query_tokens_are_401_and_never_logged():
    a = auth()
    missing = a.check("1.2.3.4", "/ws", Headers())
    assert missing.status == 401 and dict(missing.headers)["WWW-Authenticate"].startswith("Bearer")
    wrong = a.check("1.2.3.4", "/ws", Headers(("Authorization", "Bearer guess-guess-guess")))
    assert wrong.status == 401 and wrong.warn
    assert "guess" not in (wrong.log or "") and "guess" not in wrong.body
    query = a.check("1.2.3.4", f"/ws?token={TOKEN}", Headers())
    assert query.status == 401 and "query string is not accepted" in (query.log or "")
    assert TOKEN not in (query.log or "")
    basic = a.check("1.2.3.4", "/ws", Headers(("Authorization", f"Basic {TOKEN}")))
    assert basic.status == 401


def test_only_wrong_tokens_count_toward_the_block_and_the_block_ends():
    clock = Clock()
    a = auth(clock=clock)
    for _ in range(10):
        assert a.check("1.2.3.4", "/ws", Headers()).status == 401  # no token: not guessing
    for i in range(5):
        v = a.check("1.2.3.4", "/ws", Headers(("Authorization", f"Bearer wrong{i}")))
        assert v.status == 401
    assert "refusing this address for 120s" in (v.log or "")
    blocked = a.check("1.2.3.4", "/ws", Headers(("Authorization", f"Bearer {TOKEN}")))
    assert blocked.status == 429 and dict(blocked.headers)["Retry-After"] == "120"
    assert a.check("5.6.7.8", "/ws", Headers(("Authorization", f"Bearer {TOKEN}"))).status == 0
    clock.now += 121
    assert a.check("1.2.3.4", "/ws", Headers(("Authorization", f"Bearer {TOKEN}"))).status == 0


def test_failures_on_this_machine_count_per_user_not_per_127_0_0_1():
    """Every local user is 127.0.0.1: one user's wrong tokens must not lock out another."""
    clock = Clock()
    a = auth(clock=clock)
    for i in range(10):
        a.check("127.0.0.1", "/ws", Headers(("Authorization", f"Bearer wrong{i}")), uid=1001)
    blocked = a.check("127.0.0.1", "/ws", Headers(("Authorization", f"Bearer {TOKEN}")), uid=1001)
    assert blocked.status == 429  # the guesser's own user stays blocked, right token or not
    assert a.check("127.0.0.1", "/ws", Headers(("Authorization", f"Bearer {TOKEN}")), uid=1000).status == 0
    assert a.check("127.0.0.1", "/ws", Headers(("Authorization", f"Bearer {TOKEN}"))).status == 0  # unknown user
    assert a.limiter.retry_after(("uid", 1001)) > 0 and a.limiter.retry_after(("ip", "127.0.0.1")) == 0
    wrong = a.check("127.0.0.1", "/ws", Headers(("Authorization", "Bearer nope")), uid=1000)
    assert "127.0.0.1 (uid 1000)" in (wrong.log or "")
    for i in range(5):
        last = a.check("10.0.0.9", "/ws", Headers(("Authorization", f"Bearer wrong{i}")))
    assert "refusing this address" in (last.log or "")
    assert limit_key("10.0.0.9", None) == ("ip", "10.0.0.9") and limit_key("127.0.0.1", 0) == ("uid", 0)


def test_auth_off_serves_only_its_own_user_without_a_token():
    a = Authenticator(TOKEN, (), FailureLimiter(5, 60, 120, clock=Clock()), open_uid=1000)
    assert a.check("127.0.0.1", "/ws", Headers(), uid=1000).via == "none"
    other = a.check("127.0.0.1", "/ws", Headers(), uid=1001)
    assert other.status == 401 and "serves only uid 1000" in (other.log or "")
    assert a.check("127.0.0.1", "/ws", Headers()).status == 401  # whose connection is unknown
    assert a.check("127.0.0.1", "/ws", Headers(), uid=0).status == 401  # root has the token file
    # Another user with the token gets in; a wrong one from the owner counts as usual.
    assert a.check("127.0.0.1", "/ws", Headers(("Authorization", f"Bearer {TOKEN}")), uid=1001).status == 0
    assert a.check("127.0.0.1", "/ws", Headers(("Authorization", "Bearer x")), uid=1000).status == 401


def test_plain_http_takes_only_a_bearer_header_and_shares_the_block():
    clock = Clock()
    a = Authenticator(TOKEN, ("https://app.example",), FailureLimiter(3, 60, 120, clock=clock), open_uid=1000)
    assert a.check_bearer("127.0.0.1", Headers(("Authorization", f"Bearer {TOKEN}")), uid=1001).status == 0
    assert a.check_bearer("127.0.0.1", Headers(), uid=1000).status == 401  # open_uid is for the WebSocket
    sub = Headers(("Sec-WebSocket-Protocol", f"ccxd, ccxd.bearer.{TOKEN}"))
    assert a.check_bearer("127.0.0.1", sub, uid=1001).status == 401
    browser = Headers(("Authorization", f"Bearer {TOKEN}"), ("Origin", "https://app.example"))
    assert a.check_bearer("127.0.0.1", browser, uid=1001).status == 403
    for i in range(3):
        assert a.check_bearer("127.0.0.1", Headers(("Authorization", f"Bearer w{i}")), uid=1001).status == 401
    assert a.check("127.0.0.1", "/ws", Headers(("Authorization", f"Bearer {TOKEN}")), uid=1001).status == 429
    assert a.check_bearer("127.0.0.1", Headers(("Authorization", f"Bearer {TOKEN}")), uid=1002).status == 0


def test_failures_outside_the_window_are_forgotten():
    clock = Clock()
    limiter = FailureLimiter(3, window=60, block=10, clock=clock)
    assert not limiter.failure("a")
    assert not limiter.failure("a")
    clock.now += 61
    assert limiter.failures("a") == 0
    assert not limiter.failure("a")
    assert not limiter.failure("a")
    assert limiter.failure("a")
    assert limiter.retry_after("a") == pytest.approx(10)


def test_the_limiter_remembers_a_bounded_number_of_addresses():
    clock = Clock()
    limiter = FailureLimiter(2, window=60, block=60, clock=clock, max_tracked=100)
    for i in range(10_000):
        limiter.failure(f"10.0.{i // 256}.{i % 256}")
        clock.now += 0.001
    assert len(limiter._failures) <= 100
    for i in range(10_000):
        limiter.failure(f"10.1.{i // 256}.{i % 256}")
        limiter.failure(f"10.1.{i // 256}.{i % 256}")
    assert len(limiter._blocked) <= 100


@given(st.text(max_size=80))
def test_any_other_token_is_refused(guess):
    a = Authenticator(TOKEN, (), FailureLimiter(10**9, 60, 60))
    verdict = a.check("h", "/ws", Headers(("Authorization", f"Bearer {guess}")))
    assert verdict.status == (0 if guess.strip() == TOKEN else 401)


def test_auth_off_lets_everyone_in():
    a = auth(token=None)
    assert not a.required
    assert a.check("127.0.0.1", "/ws/mcp", Headers()).via == "none"


# -- origins ------------------------------------------------------------------


def test_origins_outside_the_allow_list_are_403_even_with_the_token():
    a = auth(origins=("https://app.example", "http://localhost:3000/"))
    ok = (("Authorization", f"Bearer {TOKEN}"),)
    assert a.check("h", "/ws", Headers(*ok)).status == 0  # no Origin: not a browser
    assert a.check("h", "/ws", Headers(*ok, ("Origin", "https://APP.example"))).status == 0
    assert a.check("h", "/ws", Headers(*ok, ("Origin", "http://localhost:3000"))).status == 0
    evil = a.check("h", "/ws", Headers(*ok, ("Origin", "https://evil.example")))
    assert evil.status == 403 and "evil.example" in (evil.log or "")
    assert a.check("h", "/ws", Headers(*ok, ("Origin", "null"))).status == 403
    two = Headers(*ok, ("Origin", "https://app.example"), ("Origin", "https://evil.example"))
    assert a.check("h", "/ws", two).status == 403


def test_no_browser_origin_is_allowed_by_default():
    assert auth().check("h", "/ws", Headers(("Origin", "http://127.0.0.1:8003"))).status == 403
    assert auth(token=None).check("h", "/ws", Headers(("Origin", "http://localhost"))).status == 403


def test_the_server_selects_ccxd_and_never_echoes_a_token():
    assert select_subprotocol(["ccxd.bearer.abc", "ccxd"]) == "ccxd"
    assert select_subprotocol(["ccxd.bearer.abc"]) is None
    assert select_subprotocol([]) is None


# -- addresses and the token file --------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_the_token_file_is_made_private_once_and_reused(tmp_path: Path):
    path = tmp_path / "cfg" / "ccxd" / "token"
    token, created = load_or_create_token(path)
    assert created and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_token(path) == (token, False)
    os.chmod(path, 0o644)
    assert load_or_create_token(path)[0] == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert generate_token() != generate_token()


def test_an_unusable_token_file_is_refused(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text("short\n")
    with pytest.raises(PermissionError, match="usable token"):
        load_or_create_token(path)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError):
        load_or_create_token(link)


# -- start-up refusals (config) -----------------------------------------------


def env(**values: str) -> dict[str, str]:
    return {
        "XDG_CONFIG_HOME": "/nonexistent-ccxd-test",
        **{f"CCXD_{k.upper()}": v for k, v in values.items()},
    }


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.com"])
def test_auth_off_is_refused_off_loopback(host):
    with pytest.raises(ConfigError) as info:
        load(environ=env(ws_host=host, ws_auth="false"))
    message = str(info.value)
    assert "ws_auth" in message and host in message and "\n" not in message


def test_auth_off_on_loopback_and_non_loopback_with_auth_are_fine():
    assert not load(environ=env(ws_host="127.0.0.1", ws_auth="false")).config.ws_auth
    assert load(environ=env(ws_host="0.0.0.0")).config.ws_auth
    assert (
        load(environ=env(ws_host="0.0.0.0", ws_auth="false", ws_enabled="false")).config.ws_enabled is False
    )


def test_tls_needs_both_files_and_origins_come_as_a_list():
    with pytest.raises(ConfigError, match="together"):
        load(environ=env(ws_tls_cert="/x/cert.pem"))
    cfg = load(environ=env(ws_allowed_origins="https://a.example, http://b.example:8080")).config
    assert cfg.ws_allowed_origins == ["https://a.example", "http://b.example:8080"]
    cfg = load(environ=env(ws_allowed_origins='["https://c.example"]')).config
    assert cfg.ws_allowed_origins == ["https://c.example"]
    assert load(environ=env()).config.ws_enabled is True
