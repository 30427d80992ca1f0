"""The WebSocket challenge–response without I/O: each side proves the token, nobody sends it."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ccxd.access.auth import Authenticator, FailureLimiter, Verdict
from ccxd.protocol import WS_CLIENT_NONCE, WS_CLIENT_PROOF, WS_SERVER_NONCE, WS_SERVER_PROOF
from ccxd.protocol.challenge import (
    NONCE_LIFETIME,
    accept_proof,
    client_proof,
    is_nonce,
    issue_server_nonce,
    server_nonce_time,
    server_proof,
)
from tests.access.test_auth import Clock, Headers

TOKEN = "t0k3n-" + "x" * 40
SECRET = TOKEN.encode()
CLIENT_NONCE = "c" * 32


def counting_rng():  # type: ignore[no-untyped-def]
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def auth(clock: Clock, token: str = TOKEN) -> Authenticator:
    return Authenticator(token, (), FailureLimiter(5, 60, 120, clock=clock), rng=counting_rng())


def header(verdict: Verdict, name: str) -> str:
    values = [v for k, v in verdict.headers if k == name]
    assert len(values) == 1, verdict
    return values[0]


def challenge(a: Authenticator, nonce: str = CLIENT_NONCE) -> tuple[str, str]:
    """Step 1 → 2: the server's nonce and proof."""
    v = a.check("10.0.0.1", "/ws", Headers((WS_CLIENT_NONCE, nonce)))
    assert v.status == 401 and v.warn is False and v.log is None  # asking is no failure
    return header(v, WS_SERVER_NONCE), header(v, WS_SERVER_PROOF)


def login(a: Authenticator, server_nonce: str, proof: str, nonce: str = CLIENT_NONCE) -> Verdict:
    """Step 3: the second request."""
    return a.check(
        "10.0.0.1",
        "/ws",
        Headers((WS_CLIENT_NONCE, nonce), (WS_SERVER_NONCE, server_nonce), (WS_CLIENT_PROOF, proof)),
    )


def test_the_whole_exchange_proves_both_sides_and_never_carries_the_token():
    a = auth(Clock())
    sn, sp = challenge(a)
    assert sp == server_proof(SECRET, CLIENT_NONCE, sn)  # the client can check the server first
    v = login(a, sn, client_proof(SECRET, sn, CLIENT_NONCE))
    assert v.status == 0 and v.via == "challenge"
    assert v.accept_headers == ((WS_SERVER_PROOF, accept_proof(SECRET, CLIENT_NONCE, sn)),)
    for value in (sn, sp, v.accept_headers[0][1]):
        assert TOKEN not in value


def test_a_server_without_the_token_cannot_prove_it():
    sn, sp = challenge(auth(Clock(), token="another-token-" + "y" * 30))
    assert sp != server_proof(SECRET, CLIENT_NONCE, sn)


def test_each_proof_is_labelled_so_none_can_stand_in_for_another():
    sn = "a" * 80
    proofs = {server_proof(SECRET, CLIENT_NONCE, sn), client_proof(SECRET, sn, CLIENT_NONCE)}
    proofs |= {accept_proof(SECRET, CLIENT_NONCE, sn), client_proof(SECRET, CLIENT_NONCE, sn)}
    assert len(proofs) == 4


def test_a_wrong_proof_counts_as_a_failure_and_blocks_like_a_wrong_token():
    clock = Clock()
    a = auth(clock)
    for i in range(5):
        sn, _ = challenge(a)
        v = login(a, sn, client_proof(b"guess", sn, CLIENT_NONCE))
        assert v.status == 401 and v.warn and "wrong token (via challenge)" in (v.log or ""), v
    assert a.check("10.0.0.1", "/ws", Headers((WS_CLIENT_NONCE, CLIENT_NONCE))).status == 429


def test_a_proof_is_good_once_and_only_while_the_nonce_is_fresh():
    clock = Clock()
    a = auth(clock)
    sn, _ = challenge(a)
    proof = client_proof(SECRET, sn, CLIENT_NONCE)
    assert login(a, sn, proof).status == 0
    replay = login(a, sn, proof)
    assert replay.status == 401 and "replayed" in (replay.log or "")
    sn, _ = challenge(a)
    clock.now += NONCE_LIFETIME + 1
    stale = login(a, sn, client_proof(SECRET, sn, CLIENT_NONCE))
    assert stale.status == 401 and "stale" in (stale.log or "") and not stale.warn


def test_a_server_nonce_is_bound_to_its_client_nonce_and_cannot_be_forged():
    a = auth(Clock())
    sn, _ = challenge(a)
    other = "d" * 32
    assert login(a, sn, client_proof(SECRET, sn, other), nonce=other).status == 401
    forged = "0" * 80
    assert login(a, forged, client_proof(SECRET, forged, CLIENT_NONCE)).status == 401


def test_malformed_nonces_are_refused_without_a_challenge():
    a = auth(Clock())
    v = a.check("10.0.0.1", "/ws", Headers((WS_CLIENT_NONCE, "not hex")))
    assert v.status == 400 and not v.headers
    v = a.check("10.0.0.1", "/ws", Headers((WS_CLIENT_PROOF, "ab" * 32)))
    assert v.status == 400


def test_bearer_and_subprotocol_clients_still_get_in_and_auth_off_needs_nothing():
    a = auth(Clock())
    assert a.check("10.0.0.1", "/ws", Headers(("Authorization", f"Bearer {TOKEN}"))).via == "header"
    sub = Headers(("Sec-WebSocket-Protocol", f"ccxd, ccxd.bearer.{TOKEN}"))
    assert a.check("10.0.0.1", "/ws", sub).via == "subprotocol"
    off = Authenticator(None, ())
    assert off.check("127.0.0.1", "/ws", Headers((WS_CLIENT_NONCE, CLIENT_NONCE))).via == "none"


def test_used_nonces_are_bounded():
    clock = Clock()
    a = Authenticator(TOKEN, (), FailureLimiter(5, 60, 120, clock=clock), rng=counting_rng(), max_used_nonces=4)
    for _ in range(10):
        sn, _ = challenge(a)
        assert login(a, sn, client_proof(SECRET, sn, CLIENT_NONCE)).status == 0
        clock.now += 1
    assert len(a._used) <= 4


@given(st.floats(min_value=0, max_value=1e9), st.binary(min_size=16, max_size=16))
def test_a_server_nonce_carries_its_time(now: float, random: bytes):
    sn = issue_server_nonce(SECRET, CLIENT_NONCE, now, lambda n: random)
    assert is_nonce(sn)
    made = server_nonce_time(SECRET, CLIENT_NONCE, sn)
    assert made is not None and abs(made - now) <= 0.001
    assert server_nonce_time(b"other", CLIENT_NONCE, sn) is None
