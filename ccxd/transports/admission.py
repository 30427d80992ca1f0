"""Who may hold a descriptor before logging in: the WebSocket accept gate (no I/O).

A TCP connection costs the daemon a descriptor from the moment it is accepted,
long before its peer has shown a token.  The gate bounds those connections
(issue 19, decision 19-exhaustion): at most ``max_pending`` handshakes in
progress, ``max_per_peer`` of them from one address, and none at all while the
daemon's open descriptors reach ``budget`` (its limit minus what is kept for
jobs, their spools and Unix-socket clients).  A refused connection is closed as
soon as it is accepted, before its handshake; an admitted one holds a ticket
until it has logged in or is gone.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Literal

__all__ = ["AdmissionGate", "Refusal", "Ticket", "fd_budget"]

Refusal = Literal["handshakes", "peer", "descriptors"]
"""Why a connection was refused: too many handshakes in progress, too many from its
address, or the descriptors kept for jobs and the Unix socket would be used."""


def fd_budget(limit: int, reserve: float) -> int:
    """Descriptors the daemon may hold before unauthenticated connections are refused (no I/O).

    ``reserve`` is the share of ``limit`` kept for jobs, spools and Unix-socket clients;
    at least 32 descriptors are always kept.
    """
    kept = max(32, int(limit * reserve))
    return max(0, limit - kept)


class Ticket:
    """An admitted connection's place among the handshakes in progress."""

    __slots__ = ("peer", "released")

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.released = False


class AdmissionGate:
    """Counts handshakes in progress per address and refuses what is over a cap."""

    def __init__(self, max_pending: int, max_per_peer: int, budget: int) -> None:
        self.max_pending = max_pending
        self.max_per_peer = max_per_peer
        self.budget = budget
        self.pending = 0
        self._per_peer: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[Refusal] = collections.Counter()
        """Connections refused since start, by reason."""

    def admit(self, peer: str, open_fds: Callable[[], int]) -> Ticket | Refusal:
        """A ticket for a connection just accepted from ``peer``, or why it is refused.

        ``open_fds()`` counts the descriptors the daemon holds, this connection's included;
        it is called only when the caps leave room (counting costs more than the rest).
        """
        why: Refusal | None = None
        if self.pending >= self.max_pending:
            why = "handshakes"
        elif self._per_peer[peer] >= self.max_per_peer:
            why = "peer"
        elif open_fds() > self.budget:
            why = "descriptors"
        if why is not None:
            self.refused[why] += 1
            return why
        self.pending += 1
        self._per_peer[peer] += 1
        return Ticket(peer)

    def release(self, ticket: Ticket) -> None:
        """The connection logged in or is gone (a second call does nothing)."""
        if ticket.released:
            return
        ticket.released = True
        self.pending -= 1
        self._per_peer[ticket.peer] -= 1
        if self._per_peer[ticket.peer] <= 0:
            del self._per_peer[ticket.peer]
