"""Which queued jobs may start now: the daemon-wide Claude limits.

The supervisor asks its gate before it starts a job (:class:`JobGate`).  The
:class:`ClaudeGate` holds back

* any job whose ``wait_until`` is still ahead (a retry waiting out a backoff or
  a usage-limit reset),
* every Claude job while the daemon-wide usage-limit block lasts (one job hit
  the account's limit, so the others would too),
* every Claude job while a daily or monthly budget is spent, the daemon's or
  its queue group's (``budget``, see ``ccxd/claude/budget.py``), until it resets.

Claude jobs beyond ``claude_max_concurrent`` running at once are held by the
queue (``ccxd/supervision/queue.py``): every Claude job is in the implicit
group ``claude``, whose limit is ``claude_max_concurrent`` unless the config's
``groups`` or ``ccxctl group set claude`` say otherwise.

Held-back jobs stay queued (shell jobs behind them are not held up) and carry
``wait_until``/``wait_reason`` so ``ccxctl ps`` can say "waiting until 14:05".
A timer kicks the supervisor's queue when the earliest wait ends.

The gate also hears jobs end (it is a lifecycle observer of the supervisor,
``ccxd/jobs/lifecycle.py``) and tells its ``finished_hooks`` (what a
Claude job spent counts against the budgets).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ccxd.claude.monitor import monitor_of
from ccxd.jobs.lifecycle import LifecycleObserver

if TYPE_CHECKING:
    from ccxd.jobs.job import Job

__all__ = ["ClaudeGate", "is_claude_job"]

log = logging.getLogger("ccxd.claude")

CONCURRENCY_REASON = "claude concurrency limit"
GROUP = "claude"
"""The implicit queue group of every Claude job."""
BLOCK_REASON = "usage limit"


def is_claude_job(job: Job) -> bool:
    """A job of kind ``claude``, an argv whose program is ``claude``, or a recognised shell string.

    ``kind: "shell"`` says no to all of them.  Shell strings are recognised
    once, when the job is made (``ClaudeKind.made`` gives them a monitor that
    knows its command).
    """
    kind = job.params.kind
    if kind is not None:
        return kind == "claude"
    if job.shell is None:
        return bool(job.argv) and os.path.basename(job.argv[0]) == "claude"
    monitor = monitor_of(job)
    return monitor is not None and monitor.shell_command is not None


class ClaudeGate(LifecycleObserver):
    """Admission for Claude jobs: concurrency, usage-limit block and per-job waits."""

    def __init__(
        self,
        limit: Callable[[], int],
        kick: Callable[[], None],
        *,
        is_claude: Callable[[Job], bool] = is_claude_job,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.kick = kick
        self.is_claude = is_claude
        self.clock = clock
        self.block_until: float | None = None
        self.block_reason = BLOCK_REASON
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.finished_hooks: list[Callable[[Job], None]] = []
        self.keepers: list[Callable[[Job], bool]] = []
        self.budget: Callable[[float, str | None], tuple[str, float] | None] | None = None
        """Why Claude jobs of a queue group may not start at a time and until when (a spent budget)."""

    # -- the supervisor's questions -------------------------------------------

    def may_start(self, job: Job) -> bool:
        """True if ``job`` may start now; otherwise mark why it waits."""
        now = self.clock()
        if job.wait_until is not None and job.wait_until > now:
            self._wake_at(job.wait_until)
            return False
        claude = self.is_claude(job)
        if claude and self.block_until is not None:
            if self.block_until > now:
                self._hold(job, self.block_until, self.block_reason)
                self._wake_at(self.block_until)
                return False
            self.block_until = None
        spent = self.budget(now, job.params.group) if claude and self.budget is not None else None
        if spent is not None:
            reason, resets = spent
            self._hold(job, None, reason)  # no wait_until: it waits for the budget, not for a time
            self._wake_at(resets)
            return False
        if job.wait_until is not None or job.wait_reason is not None:
            job.wait_until = None
            job.wait_reason = None
        return True

    def job_ended(self, job: Job) -> None:
        """The supervisor's lifecycle: ``job`` ended (:meth:`finished`)."""
        self.finished(job)

    def finished(self, job: Job) -> None:
        """``job`` finished (or was cancelled while queued): tell the ``finished_hooks``."""
        for hook in self.finished_hooks:
            try:
                hook(job)
            except Exception:  # a retry bug must not break the supervisor's bookkeeping
                log.exception("job %s: after-finish hook failed", job.id)

    def outlives_shutdown(self, job: Job) -> bool:
        """Retry attempts that wait survive a restart (the runner saved them)."""
        return any(check(job) for check in self.keepers)

    def implicit_groups(self, job: Job) -> tuple[str, ...]:
        """``claude`` for Claude jobs: the queue holds them to ``claude_max_concurrent``."""
        return (GROUP,) if self.is_claude(job) else ()

    def group_rule(self, name: str) -> tuple[int, str] | None:
        """``claude_max_concurrent`` for the group ``claude``."""
        return (max(1, self.limit()), CONCURRENCY_REASON) if name == GROUP else None

    # -- the daemon-wide block ------------------------------------------------

    def block(self, until: float, reason: str = BLOCK_REASON) -> None:
        """Hold every Claude job until ``until`` (epoch seconds); a later block wins."""
        if self.block_until is None or until > self.block_until:
            self.block_until = until
            self.block_reason = reason
            log.warning(
                "claude jobs wait until %s (%s)", time.strftime("%H:%M:%S", time.localtime(until)), reason
            )
        self._wake_at(until)

    # -- timers ---------------------------------------------------------------

    def _hold(self, job: Job, until: float | None, reason: str) -> None:
        if job.wait_until != until or job.wait_reason != reason:
            job.wait_until = until
            job.wait_reason = reason
            job.waiting_changed()

    def _wake_at(self, when: float) -> None:
        if self._timer is not None and self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        # Wall-clock deadline → loop timer; a little late is fine, early is not.
        delay = max(0.0, when - self.clock()) + 0.01
        self._timer_at = when
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.kick()

    def close(self) -> None:
        """Cancel the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
