"""The seam through which others decide when a queued job may start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ccxd.supervision.job import Job

__all__ = ["JobGate", "OpenGate"]


class JobGate(Protocol):
    """Asked by the supervisor before each start; told of starts and finishes."""

    def may_start(self, job: Job) -> bool:
        """True if ``job`` may start now (a free slot is already checked)."""

    def started(self, job: Job) -> None:
        """``job`` was launched."""

    def finished(self, job: Job) -> None:
        """``job`` reached its final state (ran, or was cancelled while queued)."""

    def outlives_shutdown(self, job: Job) -> bool:
        """True if queued ``job`` is taken over by the next daemon instead of being cancelled."""


class OpenGate:
    """Lets every job start as soon as there is a slot."""

    def may_start(self, job: Job) -> bool:
        """Always."""
        return True

    def started(self, job: Job) -> None:
        """Nothing to track."""

    def finished(self, job: Job) -> None:
        """Nothing to track."""

    def outlives_shutdown(self, job: Job) -> bool:
        """Never: queued jobs are cancelled on shutdown."""
        return False
