"""Seams for job kinds: shaping a job before it runs and watching its output.

The supervisor knows nothing about Claude: a :class:`JobKind` may rewrite a
request (``prepare``) and adjust a job before it is spawned (``made``: argv,
extra environment, an observer); a :class:`JobObserver` sees every output chunk
as it is read and the exit before the job is marked finished, and may stop the
job through the callback it is given.  :class:`KindObservers` is how each
job's observer hears the supervisor's lifecycle (``lifecycle.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ccxd.jobs.lifecycle import LifecycleObserver
from ccxd.output.log import Chunk
from ccxd.protocol import JobReason, StartParams

if TYPE_CHECKING:
    from ccxd.jobs.job import Job
    from ccxd.proc.reaper import ExitStatus

__all__ = ["JobKind", "JobObserver", "KindObservers"]


class JobObserver(Protocol):
    """Watches one job's process."""

    def started(self, stop: Callable[[JobReason], None], since: float | None = None) -> None:
        """The process runs; ``stop(reason)`` ends the job (first reason wins).

        ``since`` (monotonic seconds) is when the job last wrote output, for a job
        adopted from an earlier daemon: silences count from then, not from now.
        Before this call such an observer was given the output the job wrote
        before it was adopted, through :meth:`output`.
        """

    def output(self, stream: int, chunk: Chunk) -> None:
        """A chunk was read (stream 0 stdout, 1 stderr), already in the job's log."""

    def exited(self, exit_code: int | None, signal: int | None) -> None:
        """The process is gone and its output read; the job is not finished yet."""


class JobKind(Protocol):
    """Shapes the jobs it recognises."""

    def prepare(self, params: StartParams) -> StartParams:
        """``params`` as they should run; ValueError (words for people) refuses them."""

    def made(self, job: Job) -> None:
        """A job was made from prepared params: set ``argv``, ``extra_env``, ``observer``."""


class KindObservers(LifecycleObserver):
    """Tells each job's own observer (its kind's, from ``JobKind.made``) the steps of its process."""

    def job_running(self, job: Job, stop: Callable[[JobReason], None], since: float | None = None) -> None:
        """The observer starts watching."""
        if job.observer is not None:
            job.observer.started(stop, since=since)

    def job_output(self, job: Job, chunk: Chunk) -> None:
        """The observer sees the chunk."""
        if job.observer is not None:
            job.observer.output(chunk.stream, chunk)

    def job_exited(self, job: Job, status: ExitStatus) -> None:
        """The observer hears the exit before the job is settled."""
        if job.observer is not None:
            job.observer.exited(status.code, status.signal)
