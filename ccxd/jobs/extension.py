"""What a job's kind keeps about it, as the generic code sees it.

A kind (``JobKind.made``) may give a job a :class:`KindState` (a Claude job's
monitor); the job model and the RPC subscriptions use only this protocol, so
they know nothing of any kind.  Code of the kind gets its own type back with
an ``isinstance`` check (``ccxd.claude.monitor.monitor_of``).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["KindState"]


class KindState(Protocol):
    """A job's kind-specific record: its part of ``JobInfo`` and its notifications."""

    def info_fields(self) -> dict[str, Any]:
        """The ``JobInfo`` fields the kind fills (a Claude job's ``claude``), by name."""

    def events_after(self, seq: int, after: int, upto: int | None) -> tuple[list[bytes], int]:
        """Encoded notifications from event ``seq`` whose output ended in (after, upto]; the next seq.

        A subscriber sends each right after the output chunk holding its line
        (``upto`` None: all there are).
        """
