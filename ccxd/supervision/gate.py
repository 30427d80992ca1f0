"""The seam through which others decide when a queued job may start.

Priorities, groups and dependencies are the queue's (``queue.py``); a gate adds
implicit groups (``claude``) and per-job waits (a retry's backoff).  A gate
that also wants to hear jobs start and end is a
:class:`~ccxd.jobs.lifecycle.LifecycleObserver` too: the supervisor
subscribes it when it is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ccxd.jobs.job import Job

__all__ = ["JobGate", "OpenGate"]


class JobGate(Protocol):
    """Asked by the supervisor before each start."""

    def may_start(self, job: Job) -> bool:
        """True if ``job`` may start now (a free slot is already checked)."""

    def outlives_shutdown(self, job: Job) -> bool:
        """True if queued ``job`` is taken over by the next daemon instead of being cancelled."""

    def implicit_groups(self, job: Job) -> tuple[str, ...]:
        """Queue groups ``job`` is in without naming them (``claude`` for Claude jobs)."""

    def group_rule(self, name: str) -> tuple[int, str] | None:
        """An implicit group's limit (unless the config sets one) and what its held jobs wait for."""


class OpenGate:
    """Lets every job start as soon as there is a slot."""

    def may_start(self, job: Job) -> bool:
        """Always."""
        return True

    def outlives_shutdown(self, job: Job) -> bool:
        """Never: queued jobs are cancelled on shutdown."""
        return False

    def implicit_groups(self, job: Job) -> tuple[str, ...]:
        """None."""
        return ()

    def group_rule(self, name: str) -> tuple[int, str] | None:
        """No implicit groups."""
        return None
