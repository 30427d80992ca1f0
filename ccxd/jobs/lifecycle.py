"""The one seam for what happens to a job: observers hear it, in order, and never hold it up.

The supervisor tells its :class:`Lifecycle` each step of every job; what
records, counts or reacts to jobs subscribes a :class:`LifecycleObserver` and
overrides the steps it needs: the recorder (records and output to the store),
the job kinds' per-job observers (``KindObservers``: a Claude job's monitor),
the Claude gate (budgets) and the Claude retry runner.  Observers are called
synchronously and must not block; a failing ``job_started`` or ``job_ended``
is logged and the others still hear it.

The one awaited seam, which can refuse or change a job, is the user's hooks
(``ccxd/hooks/runner.py``); listeners of one job's changes for its
subscribers are ``Job.add_listener``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ccxd.output.log import Chunk
from ccxd.protocol import JobInfo, JobReason

if TYPE_CHECKING:
    from ccxd.jobs.job import Job
    from ccxd.proc.reaper import ExitStatus

__all__ = ["Lifecycle", "LifecycleObserver"]

log = logging.getLogger("ccxd.supervision")


class LifecycleObserver:
    """Hears every job's steps; each method does nothing unless overridden."""

    def job_started(self, job: Job) -> None:
        """The job took a slot: it was launched, or adopted from an earlier daemon."""

    def job_running(self, job: Job, stop: Callable[[JobReason], None], since: float | None = None) -> None:
        """The job's process runs; ``stop(reason)`` ends the job (first reason wins).

        ``since`` (monotonic seconds): when an adopted job last wrote output, for
        timers that count silence; None for a job that just started (or whose exit
        is read at once).
        """

    def job_output(self, job: Job, chunk: Chunk) -> None:
        """A chunk entered the job's log."""

    def job_exited(self, job: Job, status: ExitStatus) -> None:
        """The job's process is gone and its output read; the job is not settled yet."""

    def job_ended(self, job: Job) -> None:
        """The job reached its final state (it ran, or ended while queued); it is recorded next.

        What an observer adds to the job here (a retry decision) is in that record.
        """

    def job_recorded(self, job: Job, info: JobInfo, *, outcome: bool) -> None:
        """The job's record changed to ``info``; ``outcome``: the first record of its end.

        A finished job is recorded again when its hooks add to it (``outcome`` False).
        """


class Lifecycle:
    """The observers of a supervisor's jobs, told each step in subscription order."""

    def __init__(self) -> None:
        self.observers: list[LifecycleObserver] = []

    def subscribe(self, observer: LifecycleObserver) -> None:
        """Tell ``observer`` every step from now on."""
        self.observers.append(observer)

    def unsubscribe(self, observer: object) -> None:
        """Stop telling ``observer`` (unknown is fine)."""
        self.observers = [o for o in self.observers if o is not observer]

    def started(self, job: Job) -> None:
        """:meth:`LifecycleObserver.job_started`."""
        for observer in self.observers:
            try:
                observer.job_started(job)
            except Exception:
                log.exception("job %s: an observer of its start failed", job.id)

    def running(self, job: Job, stop: Callable[[JobReason], None], since: float | None = None) -> None:
        """:meth:`LifecycleObserver.job_running`."""
        for observer in self.observers:
            observer.job_running(job, stop, since)

    def output(self, job: Job, chunk: Chunk) -> None:
        """:meth:`LifecycleObserver.job_output` (the hot path: nothing between the calls)."""
        for observer in self.observers:
            observer.job_output(job, chunk)

    def exited(self, job: Job, status: ExitStatus) -> None:
        """:meth:`LifecycleObserver.job_exited`."""
        for observer in self.observers:
            observer.job_exited(job, status)

    def ended(self, job: Job) -> None:
        """:meth:`LifecycleObserver.job_ended`; a bug in one must not break the supervisor's bookkeeping."""
        for observer in self.observers:
            try:
                observer.job_ended(job)
            except Exception:
                log.exception("job %s: an observer of its end failed", job.id)

    def recorded(self, job: Job, info: JobInfo, *, outcome: bool) -> None:
        """:meth:`LifecycleObserver.job_recorded`."""
        for observer in self.observers:
            observer.job_recorded(job, info, outcome=outcome)
