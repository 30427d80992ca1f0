"""Who may open a WebSocket: token, Origin and per-user failure limits (sans-I/O).

:class:`Authenticator` decides on plain values (the peer's address, the uid
of the local user who opened the connection when it is local, the request
target, the headers) and a clock; the transport turns its
:class:`Verdict` into the HTTP answer of the opening handshake, so a refused
peer never reaches the dispatcher.  Only :func:`load_or_create_token` touches
the disk.

Where a client puts the token:

* ``Authorization: Bearer <token>``, for every client that can set headers.
* ``Sec-WebSocket-Protocol: ccxd, ccxd.bearer.<token>``, the fallback for
  browsers, whose WebSocket API cannot set headers.  The server selects
  ``ccxd`` and never echoes the token back; proxies do not log this header the
  way they log URLs.  (A client that offers only ``ccxd.bearer.<token>`` is
  authenticated but gets no subprotocol, which browsers reject: offer both.)
* The challenge–response of :mod:`ccxd.protocol.challenge`
  (``Ccxd-Client-Nonce``, ``Ccxd-Server-Proof``, ``Ccxd-Client-Proof``), which
  ccxd's own clients use off loopback: the server proves it knows the token
  first, and the token itself never crosses the wire.
* ``?token=`` is **not** accepted: URLs end up in proxy and server access logs,
  shell and browser history and ``Referer`` headers.  A request that tries it
  is told so in the log, without the value.

Tokens and proofs are compared with :func:`hmac.compare_digest`.  Only wrong
tokens and proofs count as failures (a client without any token is not guessing).
Failures are counted per *key*: the uid of a local peer (every local user is
127.0.0.1, so one user's guesses must not lock out another), the address of
any other.  A key with ``max_failures`` wrong tokens within ``window`` seconds
gets 429 for ``block`` seconds, whatever it sends: checking tokens during the
block would let the guessing go on unlimited.

``open_uid`` is ``ws_auth = false``: connections that this uid opened need no
token; everybody else (another local user, a peer whose user is unknown)
needs it as if authentication were on.
"""

from __future__ import annotations

import collections
import hmac
import math
import os
import secrets
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol, TypeAlias
from urllib.parse import parse_qsl, urlsplit

from ccxd import secretfile
from ccxd.protocol import (
    WS_BEARER_PREFIX,
    WS_CLIENT_NONCE,
    WS_CLIENT_PROOF,
    WS_SERVER_NONCE,
    WS_SERVER_PROOF,
    WS_SUBPROTOCOL,
)
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
    "Authenticator",
    "FailureLimiter",
    "HeaderView",
    "Verdict",
    "generate_token",
    "limit_key",
    "load_or_create_token",
    "select_subprotocol",
]

LimitKey: TypeAlias = tuple[str, int | str]
"""Whose failures are counted together: ``("uid", N)`` for a local user, ``("ip", ADDR)`` for the rest."""

_MIN_TOKEN_LENGTH = 16


def generate_token() -> str:
    """A new random token (256 bits, URL- and header-safe)."""
    return secrets.token_urlsafe(32)


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The token stored at ``path``, creating it on first use; ``(token, created)``.

    The directory is made 0700 and the file 0600 (created with O_EXCL, never
    through a symlink); a file others can read is tightened to 0600.  Raises
    PermissionError with a one-line message when the file is unusable.
    """
    parent = path.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(parent)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{parent} is owned by uid {st.st_uid}, not by us ({os.getuid()})")
    if st.st_mode & 0o077:
        os.chmod(parent, 0o700)
    raw, created = secretfile.load_or_create(
        path, "the token file", lambda: f"{generate_token()}\n".encode("ascii"), open_to_others="tighten"
    )
    token = raw.decode("utf-8", errors="replace").strip()
    if len(token) < _MIN_TOKEN_LENGTH or any(c.isspace() or not c.isprintable() for c in token):
        raise PermissionError(
            f"the token file {path} does not hold a usable token (at least {_MIN_TOKEN_LENGTH} "
            "printable characters); delete it and ccxd makes a new one"
        )
    return token, created


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to answer with: ``ccxd`` when offered, never a token."""
    return WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None


class HeaderView(Protocol):
    """Read access to request headers (``websockets.datastructures.Headers`` fits)."""

    def get_all(self, key: str) -> list[str]:
        """Every value of header ``key`` (case-insensitive)."""


class Verdict(NamedTuple):
    """What to do with one opening handshake."""

    status: int
    """0 to go on with the handshake, else the HTTP status to answer with."""
    body: str = ""
    """Text for the client (says what is wrong, never anything secret)."""
    log: str | None = None
    """A line for the daemon log, without the token; None for nothing."""
    warn: bool = False
    """Log at warning level (a wrong token, a block)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers (WWW-Authenticate, Retry-After)."""
    via: str = ""
    """How an accepted peer authenticated: ``header``, ``subprotocol``, ``challenge``, ``none`` (auth off)."""
    accept_headers: tuple[tuple[str, str], ...] = ()
    """Headers for the 101 answer of an accepted handshake (the challenge's ``Ccxd-Server-Proof``)."""


OK_NO_AUTH = Verdict(0, via="none")


def limit_key(addr: str, uid: int | None) -> LimitKey:
    """The failure counter of a peer: its uid when it is local and known, else its address (no I/O)."""
    return ("uid", uid) if uid is not None else ("ip", addr)


def _who(addr: str, uid: int | None) -> str:
    return f"{addr} (uid {uid})" if uid is not None else addr


class FailureLimiter:
    """Counts wrong tokens per key (:func:`limit_key`) and blocks keys that fail too often.

    Memory is bounded: at most ``max_tracked`` keys are remembered (the
    oldest are forgotten first) and each keeps at most ``max_failures`` times.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 60.0,
        block: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.block = block
        self.clock = clock
        self.max_tracked = max_tracked
        self._failures: dict[Hashable, collections.deque[float]] = {}
        self._blocked: dict[Hashable, float] = {}

    def retry_after(self, addr: Hashable) -> float:
        """Seconds the key ``addr`` stays blocked; 0 when it is not."""
        until = self._blocked.get(addr)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked[addr]
            return 0.0
        return left

    def failures(self, addr: Hashable) -> int:
        """Wrong tokens from the key ``addr`` within the window."""
        times = self._failures.get(addr)
        if not times:
            return 0
        self._expire(times, self.clock())
        return len(times)

    def failure(self, addr: Hashable) -> bool:
        """Record a wrong token from the key ``addr``; True when this one blocks it."""
        now = self.clock()
        times = self._failures.pop(addr, None)
        if times is None:
            times = collections.deque(maxlen=self.max_failures)
        self._failures[addr] = times  # re-insert: dict order is least recently failed first
        self._expire(times, now)
        times.append(now)
        if len(times) >= self.max_failures:
            self._blocked.pop(addr, None)
            self._blocked[addr] = now + self.block
            times.clear()
            self._trim(self._blocked)
            return True
        self._trim(self._failures)
        return False

    def _expire(self, times: collections.deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def _trim(self, table: dict[Hashable, collections.deque[float]] | dict[Hashable, float]) -> None:
        if len(table) <= self.max_tracked:
            return
        now = self.clock()
        if table is self._failures:
            for key in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window]:
                del self._failures[key]
        else:
            for key in [k for k, v in self._blocked.items() if v <= now]:
                del self._blocked[key]
        while len(table) > self.max_tracked:
            del table[next(iter(table))]


class Authenticator:
    """Decides whether an opening handshake may proceed.

    ``open_uid`` lets that local user in without a token (``ws_auth = false``,
    which the config only allows on loopback); ``token`` None lets everybody in
    (tests only: the daemon always has a token).  ``allowed_origins`` lists
    the browser origins allowed; a request without an ``Origin`` header (any
    non-browser client) is not affected.  Challenges are timed by the
    limiter's clock; ``rng`` makes their nonces.
    """

    def __init__(
        self,
        token: str | None,
        allowed_origins: Iterable[str] = (),
        limiter: FailureLimiter | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        max_used_nonces: int = 10_000,
        open_uid: int | None = None,
    ) -> None:
        self._token = token.encode("utf-8") if token is not None else None
        self.open_uid = open_uid
        self.allowed_origins = frozenset(_normalize_origin(o) for o in allowed_origins)
        self.limiter = limiter or FailureLimiter()
        self._rng = rng
        self._max_used = max_used_nonces
        self._used: dict[str, float] = {}  # server nonces already logged in with -> when they expire

    @property
    def required(self) -> bool:
        """True when some peers need a token (everybody but ``open_uid``)."""
        return self._token is not None

    def check(self, addr: str, target: str, headers: HeaderView, uid: int | None = None) -> Verdict:
        """The verdict for a handshake from ``addr`` for ``target`` (path and query).

        ``uid`` is the local user who opened the connection (None: a remote
        peer, or one whose user is unknown).
        """
        refused = self._gate(addr, uid, headers, "ws_allowed_origins")
        if refused is not None:
            return refused
        if self._token is None:
            return OK_NO_AUTH
        key, who = limit_key(addr, uid), _who(addr, uid)
        client_nonce = _one(headers, WS_CLIENT_NONCE)
        if headers.get_all(WS_CLIENT_PROOF):
            return self._login(key, who, self._token, client_nonce, headers)
        presented, via = _credentials(headers)
        if presented is None and client_nonce is not None:
            return self._challenge(self._token, client_nonce)
        if presented is None:
            if uid is not None and uid == self.open_uid:
                return OK_NO_AUTH
            hint = " (a token in the query string is not accepted)" if _has_query_token(target) else ""
            return self._no_token(
                who, "Authorization: Bearer, or subprotocol ccxd.bearer.TOKEN", hint + self._open_note()
            )
        if hmac.compare_digest(presented.encode("utf-8", errors="surrogateescape"), self._token):
            return Verdict(0, via=via)
        return self._wrong(key, who, via)

    def check_bearer(self, addr: str, headers: HeaderView, uid: int | None = None) -> Verdict:
        """The verdict for a plain HTTP request (``GET /metrics``): ``Authorization: Bearer`` only.

        The same failure counters and blocks as the WebSocket; no browser
        origin is allowed, and ``open_uid`` does not apply.
        """
        refused = self._gate(addr, uid, headers, None)
        if refused is not None:
            return refused
        if self._token is None:
            return OK_NO_AUTH
        presented = None
        for value in headers.get_all("Authorization"):
            scheme, _, rest = value.strip().partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                presented = rest.strip()
        who = _who(addr, uid)
        if presented is None:
            return self._no_token(who, "Authorization: Bearer", "")
        if hmac.compare_digest(presented.encode("utf-8", errors="surrogateescape"), self._token):
            return Verdict(0, via="header")
        return self._wrong(limit_key(addr, uid), who, "header")

    def _gate(
        self, addr: str, uid: int | None, headers: HeaderView, origins_setting: str | None
    ) -> Verdict | None:
        """A block (429) or a foreign browser Origin (403), checked before any token."""
        left = self.limiter.retry_after(limit_key(addr, uid))
        if left > 0:
            wait = max(1, math.ceil(left))
            return Verdict(
                429,
                "too many failed attempts; try again later\n",
                headers=(("Retry-After", str(wait)),),
            )
        origins = headers.get_all("Origin")
        if origins:
            origin = origins[0] if len(origins) == 1 else ", ".join(origins)
            allowed = self.allowed_origins if origins_setting else frozenset()
            if len(origins) > 1 or _normalize_origin(origin) not in allowed:
                where = f"not in {origins_setting}" if origins_setting else "not allowed here"
                return Verdict(
                    403,
                    "origin not allowed\n",
                    log=f"refused {_who(addr, uid)}: Origin {origin[:200]!r} is {where}",
                    warn=True,
                )
        return None

    def _open_note(self) -> str:
        if self.open_uid is None:
            return ""
        return f" (ws_auth = false serves only uid {self.open_uid} without one)"

    def _no_token(self, who: str, how: str, note: str) -> Verdict:
        return Verdict(
            401,
            f"a bearer token is required ({how})\n",
            log=f"refused {who}: no token{note}",
            headers=(("WWW-Authenticate", 'Bearer realm="ccxd"'),),
        )

    def _challenge(self, token: bytes, client_nonce: str) -> Verdict:
        """Step 2 of the challenge–response: our nonce and our proof, in a 401."""
        if not is_nonce(client_nonce):
            return Verdict(400, f"{WS_CLIENT_NONCE} must be 32 to 128 lower-case hex digits\n")
        nonce = issue_server_nonce(token, client_nonce, self.limiter.clock(), self._rng)
        return Verdict(
            401,
            "answer the challenge: send Ccxd-Client-Proof (or a bearer token)\n",
            headers=(
                ("WWW-Authenticate", 'Bearer realm="ccxd"'),
                (WS_SERVER_NONCE, nonce),
                (WS_SERVER_PROOF, server_proof(token, client_nonce, nonce)),
            ),
        )

    def _login(
        self, key: LimitKey, who: str, token: bytes, client_nonce: str | None, headers: HeaderView
    ) -> Verdict:
        """Step 3 of the challenge–response: check the client's proof."""
        server_nonce = _one(headers, WS_SERVER_NONCE)
        proof = _one(headers, WS_CLIENT_PROOF)
        if client_nonce is None or server_nonce is None or proof is None or not is_nonce(client_nonce):
            return Verdict(400, f"{WS_CLIENT_PROOF} needs one {WS_CLIENT_NONCE} and one {WS_SERVER_NONCE}\n")
        made = server_nonce_time(token, client_nonce, server_nonce)
        if made is None:
            return self._wrong(key, who, "challenge")  # a nonce we never made: forged
        now = self.limiter.clock()
        if not now - NONCE_LIFETIME <= made <= now:
            return Verdict(401, "the challenge expired; start again\n", log=f"refused {who}: stale nonce")
        if server_nonce in self._used:
            return self._wrong(key, who, "challenge (replayed)")
        if not hmac.compare_digest(proof, client_proof(token, server_nonce, client_nonce)):
            return self._wrong(key, who, "challenge")
        self._remember(server_nonce, made + NONCE_LIFETIME, now)
        return Verdict(
            0,
            via="challenge",
            accept_headers=((WS_SERVER_PROOF, accept_proof(token, client_nonce, server_nonce)),),
        )

    def _remember(self, server_nonce: str, expires: float, now: float) -> None:
        """Mark a server nonce used, forgetting expired ones; only logins add, so this stays small."""
        used = self._used
        if len(used) >= self._max_used:
            for key in [k for k, t in used.items() if t < now]:
                del used[key]
        while len(used) >= self._max_used:
            del used[next(iter(used))]
        used[server_nonce] = expires

    def _wrong(self, key: LimitKey, who: str, via: str) -> Verdict:
        """A wrong token or proof: count it against ``key``."""
        blocked = self.limiter.failure(key)
        count = self.limiter.failures(key)
        if blocked:
            whom = "this user" if key[0] == "uid" else "this address"
            log = (
                f"refused {who}: wrong token (via {via}); {self.limiter.max_failures} failures within "
                f"{self.limiter.window:g}s, refusing {whom} for {self.limiter.block:g}s"
            )
        else:
            log = (
                f"refused {who}: wrong token (via {via}); "
                f"{count}/{self.limiter.max_failures} failures within {self.limiter.window:g}s"
            )
        return Verdict(
            401,
            "wrong token\n",
            log=log,
            warn=True,
            headers=(("WWW-Authenticate", 'Bearer realm="ccxd", error="invalid_token"'),),
        )


def _one(headers: HeaderView, name: str) -> str | None:
    """The value of a header sent exactly once, else None."""
    values = headers.get_all(name)
    return values[0].strip() if len(values) == 1 else None


def _credentials(headers: HeaderView) -> tuple[str | None, str]:
    """The token a request presents and where: the Authorization header wins."""
    for value in headers.get_all("Authorization"):
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip(), "header"
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        for item in value.split(","):
            item = item.strip()
            if item.startswith(WS_BEARER_PREFIX) and len(item) > len(WS_BEARER_PREFIX):
                return item[len(WS_BEARER_PREFIX) :], "subprotocol"
    return None, ""


def _has_query_token(target: str) -> bool:
    query = urlsplit(target).query
    return any(k.lower() in ("token", "access_token") for k, _ in parse_qsl(query, keep_blank_values=True))


def _normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()
