"""One-time login secrets and the browser sessions they open (no I/O).

``ccxctl ui`` asks the daemon for a login secret (``ui.login_url``); the
browser redeems it once, within :data:`LOGIN_TTL` seconds, for a session
(the ``HttpOnly`` cookie).  Only digests of secrets are kept, so a dict
lookup never compares a secret byte by byte.  A session is bound to the local
uid that redeemed the login: every user of the machine is 127.0.0.1 and
cookies ignore ports, so a cookie another local user's server received must
not work from that user's processes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["LOGIN_TTL", "SESSION_TTL", "Logins", "Session"]

LOGIN_TTL = 60.0
"""Seconds a login URL may be used in (once)."""
SESSION_TTL = 12 * 3600.0
"""Seconds a browser session lasts after its login."""
_MAX_ENTRIES = 1024


class Session(NamedTuple):
    """A browser session: its cookie value and whom it belongs to."""

    cookie: str
    uid: int | None
    expires: float


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogateescape")).hexdigest()


class Logins:
    """Issues login secrets, redeems them once, and checks session cookies."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        token: Callable[[int], str] = secrets.token_urlsafe,
        login_ttl: float = LOGIN_TTL,
        session_ttl: float = SESSION_TTL,
    ) -> None:
        self.clock = clock
        self._token = token
        self.login_ttl = login_ttl
        self.session_ttl = session_ttl
        self._logins: dict[str, float] = {}  # digest -> expiry
        self._sessions: dict[str, tuple[int | None, float]] = {}  # digest -> (uid, expiry)

    def issue(self) -> str:
        """A new one-time login secret (256 bits)."""
        now = self.clock()
        self._expire(self._logins, now)
        secret = self._token(32)
        self._logins[_digest(secret)] = now + self.login_ttl
        return secret

    def redeem(self, secret: str, uid: int | None) -> Session | None:
        """A new session for a login secret used for the first time in time, else None."""
        now = self.clock()
        expires = self._logins.pop(_digest(secret), None)
        if expires is None or expires < now:
            return None
        self._expire(self._sessions, now)
        cookie = self._token(32)
        session = Session(cookie, uid, now + self.session_ttl)
        self._sessions[_digest(cookie)] = (uid, session.expires)
        return session

    def valid(self, cookie: str, uid: int | None) -> bool:
        """True for the cookie of a live session opened by the same local uid."""
        entry = self._sessions.get(_digest(cookie))
        if entry is None:
            return False
        owner, expires = entry
        if expires < self.clock():
            del self._sessions[_digest(cookie)]
            return False
        return owner == uid

    def _expire(self, table: dict[str, float] | dict[str, tuple[int | None, float]], now: float) -> None:
        """Drop expired entries, and the oldest ones beyond the bound (a flood of ``ui.login_url``)."""
        if len(table) < _MAX_ENTRIES:
            return
        for key in list(table):
            value = table[key]
            if (value if isinstance(value, float) else value[1]) < now:
                del table[key]
        while len(table) >= _MAX_ENTRIES:
            del table[next(iter(table))]
