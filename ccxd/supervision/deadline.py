"""A job's time limits: when one ends the job (no I/O), and the one timer each that asks.

A limit is ``after`` seconds from the job's start, and maybe ``silence``:

* a *deadline* (no ``silence``: an explicit ``timeout``, or ``default_timeout``)
  ends the job ``after`` seconds from its start, whatever it does;
* a *guard* (an estimated timeout; the idle timeout is one with ``after`` 0)
  ends it only once it is past ``after`` *and* has written nothing for
  ``silence`` seconds: an estimate guards against hangs, it is no deadline.

:func:`due` decides.  :class:`LimitTimer` keeps one loop timer per limit and
re-arms it when it fires too early (output came since), so a chunk of output
costs the job one stored float (``Job.last_output_mono``), never a timer.
Time counts from ``Job.started_mono``, so an adopted job keeps its limits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ccxd.protocol import JobState

if TYPE_CHECKING:
    from ccxd.jobs.job import Job

__all__ = ["LimitTimer", "due", "guard_note"]


def due(after: float, silence: float | None, elapsed: float, quiet: float) -> float:
    """Seconds until the limit ends a job ``elapsed`` s old and ``quiet`` s silent; ≤ 0: now (no I/O)."""
    wait = after - elapsed
    if silence is not None:
        wait = max(wait, silence - quiet)
    return wait


def guard_note(after: float, silence: float, elapsed: float, quiet: float) -> str:
    """What the record says when a guard ended a job (no I/O)."""
    return (
        f"no output for {quiet:.0f}s, {elapsed:.0f}s after the start (estimated timeout: "
        f"ended only when silent for {silence:g}s after {after:g}s)"
    )


class LimitTimer:
    """One loop timer for one limit of one job; ``on_due(elapsed, quiet)`` when the limit ends it."""

    __slots__ = ("_after", "_handle", "_job", "_loop", "_on_due", "_silence", "_spare_paused")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        job: Job,
        after: float,
        silence: float | None,
        on_due: Callable[[float, float], None],
        *,
        spare_paused: bool = False,
    ) -> None:
        """``spare_paused``: a paused job is silent by request, not hung; look again later."""
        self._loop = loop
        self._job = job
        self._after = after
        self._silence = silence
        self._on_due = on_due
        self._spare_paused = spare_paused
        now = time.monotonic()
        wait = due(after, silence, now - (job.started_mono or now), now - job.last_output_mono)
        self._handle: asyncio.TimerHandle | None = loop.call_later(max(0.0, wait), self._check)

    def _check(self) -> None:
        self._handle = None
        job = self._job
        if job.finished or job.stop_reason is not None:
            return
        now = time.monotonic()
        elapsed, quiet = now - (job.started_mono or now), now - job.last_output_mono
        if self._silence is None:
            self._on_due(elapsed, quiet)  # a deadline: armed for its time, it never waits longer
            return
        wait = due(self._after, self._silence, elapsed, quiet)
        if wait <= 0 and self._spare_paused and job.state is JobState.PAUSED:
            wait = self._silence
        if wait <= 0:
            self._on_due(elapsed, quiet)
        else:
            self._handle = self._loop.call_later(wait, self._check)

    def cancel(self) -> None:
        """Stop watching (the job ended)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
