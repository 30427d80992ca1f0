"""Admission: which jobs start now and which wait, and what each waits for.

A job starts when a slot is free (``max_concurrent_jobs``), the jobs it waits
for (``after``, ``after_any``) have ended, its queue groups are open, memory
and load are below the ``admit_*`` thresholds, and the gate (the Claude
limits) lets it; otherwise it is queued.  The order of the queue is
``queue.py``'s (no I/O); this module tells it what starts and ends, keeps each
queued job's position and ``wait_reason`` current, and starts queued jobs as
soon as they may.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ccxd.config import Config
from ccxd.errors import HistoryUnavailable, InvalidRequest, QueueFull
from ccxd.protocol import JobInfo, JobReason, JobState, StartParams
from ccxd.supervision.gate import JobGate, OpenGate
from ccxd.supervision.queue import JobQueue, priority_value

if TYPE_CHECKING:
    from ccxd.cgroups.control import ResourceControl
    from ccxd.history.recorder import Recorder
    from ccxd.jobs.job import Job

__all__ = ["Admission", "outcome", "stored_ends", "succeeded"]

log = logging.getLogger("ccxd.supervision")

_ADMIT_RECHECK = 1.0
"""Seconds between looks at memory and load while admission holds queued jobs back."""


class Admission:
    """Slots, the queue, dependencies, the gate and the ``admit_*`` thresholds of one daemon."""

    def __init__(
        self,
        config: Config,
        resources: ResourceControl,
        jobs: Mapping[str, Job],
        launch: Callable[[Job], None],
        end_queued: Callable[[Job, JobReason, str], None],
    ) -> None:
        """``launch`` starts a job that took a slot; ``end_queued`` ends one that never will run."""
        self.config = config
        self.resources = resources
        self.jobs = jobs
        self._launch = launch
        self._end_queued = end_queued
        self.gate: JobGate = OpenGate()
        """Decides when a queued job may start (the Claude limits plug in here)."""
        self.queue: JobQueue[Job] = JobQueue(self._configured_parallel, self._group_note)
        """Queued jobs in start order: priorities, groups, dependencies (queue.py, no I/O)."""
        self.queued: dict[str, Job] = {}
        self.running = 0
        """Jobs launched and not ended (adopted ones too)."""
        self._recheck: asyncio.TimerHandle | None = None

    # -- a new job ------------------------------------------------------------

    def groups_of(self, job: Job) -> tuple[str, ...]:
        """The job's queue groups: the one it names, then implicit ones (``claude``)."""
        named = (job.params.group,) if job.params.group is not None else ()
        return named + tuple(g for g in self.gate.implicit_groups(job) if g not in named)

    def dependencies(self, job: Job) -> tuple[list[str], list[str], str | None]:
        """The jobs ``job`` still waits for (``after``, ``after_any``), and why it fails now if it must.

        A retry attempt does not wait again: its chain's first attempt did.
        """
        params = job.params
        if job.attempt > 1 or not (params.after or params.after_any):
            return [], [], None
        after: list[str] = []
        after_any: list[str] = []
        failed: str | None = None
        lists = (("after", params.after, after), ("after_any", params.after_any, after_any))
        for field, deps, pending in lists:
            for dep in deps:
                other = self.jobs.get(dep)
                info = other.info() if other is not None and other.finished else None
                if other is None:
                    info = job.stored_ends.get(dep)
                    if info is None:
                        raise InvalidRequest(f"unknown job {dep} - at `$.params.{field}`")
                if info is None or info.state is not JobState.FINISHED:
                    pending.append(dep)
                elif field == "after" and failed is None and not succeeded(info):
                    failed = f"job {dep} (after) {outcome(info)}"
        cycle = self.queue.cycle(job.id, after + after_any)
        if cycle is not None:
            raise InvalidRequest("dependency cycle: " + " waits for ".join(cycle))
        return after, after_any, failed

    def may_start_now(self, job: Job, waits: bool) -> bool:
        """True if ``job`` (whose ``groups_of`` are set) may start at once; ``waits``: for other jobs."""
        return (
            self.running < self.config.max_concurrent_jobs
            and not waits
            and self.queue.open(job.queue_groups)
            and self._admitted(job)
            and self.gate.may_start(job)
        )

    def enqueue(self, job: Job, after: list[str], after_any: list[str]) -> None:
        """Queue ``job``; a full queue refuses it (:class:`QueueFull`) and nothing is changed."""
        if len(self.queue) >= self.config.max_queued_jobs:
            raise QueueFull(len(self.queue))
        self.queued[job.id] = job
        priority = priority_value(job.params.priority)
        position = self.queue.add(
            job.id, job, priority=priority, groups=job.queue_groups, after=after, after_any=after_any
        )
        self._show_wait(job, position)
        if position is not None:
            self._renumber(position)  # the jobs behind it moved back
        log.info("job %s queued at position %s", job.id, position or f"- ({job.wait_reason})")

    def remove(self, job: Job) -> None:
        """Take a queued job out of the queue (it ends without running)."""
        self.queue.remove(job.id)
        self.queued.pop(job.id, None)

    # -- running jobs ---------------------------------------------------------

    def launched(self, job: Job, *, join_groups: bool = False) -> None:
        """``job`` takes a slot; ``join_groups``: it did not come from the queue (its groups count it now)."""
        self.running += 1
        if join_groups:
            self.queue.started(job.queue_groups)

    def run_ended(self, job: Job, *, left: bool) -> None:
        """``job``'s run is over (``left``: still running, for the next daemon: it keeps its groups)."""
        self.running -= 1
        if not left:
            self.queue.finished(job.queue_groups)

    def start_ready(self) -> None:
        """Start whatever queued jobs may start now, best first (priority, then age).

        Jobs their groups or the gate hold back let others pass.  The gate calls
        this when a wait ends, and group changes when a limit grows.
        """
        free = self.config.max_concurrent_jobs - self.running
        first = self.queue.first_ready()
        if free > 0 and first is not None and self._admitted(first):
            for job in self.queue.pick(free, self._may_start):
                self.queued.pop(job.id, None)
                if job.finished:
                    self.queue.finished(job.queue_groups)
                    continue
                job.queue_position = None
                if job.queue_wait is not None:
                    if job.wait_reason == job.queue_wait:
                        job.wait_reason = None
                    job.queue_wait = None
                self.launched(job)
                self._launch(job)
        self._renumber()

    def dependency_ended(self, job: Job) -> None:
        """Release or fail the queued jobs that wait for ``job``, which ended."""
        if not self.queue.awaited(job.id):
            return
        if job.retried_by is not None and job.retried_by in self.queued:
            self.queue.transfer(job.id, job.retried_by)  # its retry attempt decides for them
            return
        info = job.info()
        ready, failed = self.queue.ended(job.id, succeeded(info))
        for waiter_id in failed:
            waiter = self.queued.get(waiter_id)
            if waiter is not None:
                self._end_queued(waiter, JobReason.DEPENDENCY_FAILED, f"job {job.id} (after) {outcome(info)}")
        for waiter_id in ready:
            waiter = self.queued.get(waiter_id)
            if waiter is not None:
                self._show_wait(waiter, waiter.queue_position)

    # -- waits ----------------------------------------------------------------

    def _show_wait(self, job: Job, position: int | None) -> None:
        """Set a queued job's position and what the queue holds it for; tell its followers."""
        hold = self.queue.hold(job.id)
        changed = job.queue_position != position
        job.queue_position = position
        if hold != job.queue_wait:
            if hold is not None:
                job.wait_reason = hold
            elif job.wait_reason == job.queue_wait:
                job.wait_reason = None
            job.queue_wait = hold
            changed = True
        if changed:
            job.notify()

    def _renumber(self, start: int = 1) -> None:
        # Every queued job behind a change (one pass, as cheap as can be: the queue may be long).
        for position, job in self.queue.positions(start):
            if job.queue_groups:
                self._show_wait(job, position)  # its group may have filled or paused
            elif job.queue_position != position:
                job.queue_position = position
                job.notify()

    def _may_start(self, job: Job) -> bool:
        return job.finished or self.gate.may_start(job)

    def _admitted(self, job: Job) -> bool:
        """False while memory or load is past the ``admit_*`` thresholds (looked at again in 1 s)."""
        blocked = self.resources.admission_block()
        if blocked is None:
            if job.admission_wait is not None:
                if job.wait_reason == job.admission_wait:
                    job.wait_reason = None
                job.admission_wait = None
            return True
        if job.admission_wait != blocked:
            job.admission_wait = job.wait_reason = blocked
            job.notify()
        if self._recheck is None:

            def again() -> None:
                self._recheck = None
                self.start_ready()

            self._recheck = asyncio.get_running_loop().call_later(_ADMIT_RECHECK, again)
        return False

    def _configured_parallel(self, name: str) -> int | None:
        configured = self.config.groups.get(name)
        if configured is not None and configured.parallel is not None:
            return configured.parallel
        rule = self.gate.group_rule(name)
        return rule[0] if rule is not None else None

    def _group_note(self, name: str) -> str | None:
        rule = self.gate.group_rule(name)
        return rule[1] if rule is not None else None


async def stored_ends(
    params: StartParams, known: Mapping[str, Job], recorder: Recorder | None, timeout: float
) -> dict[str, JobInfo]:
    """The jobs named in ``after``/``after_any`` that only the store still knows."""
    found: dict[str, JobInfo] = {}
    for dep in dict.fromkeys((*params.after, *params.after_any)):
        if dep in known or recorder is None:
            continue
        try:
            info = await asyncio.wait_for(recorder.store.get_job(dep), timeout)
        except Exception as exc:  # the store is down: say so rather than "unknown"
            why = f"job {dep} (after) is not in memory and history is unavailable"
            raise HistoryUnavailable(why) from exc
        if info is not None:
            found[dep] = info
    return found


def succeeded(info: JobInfo) -> bool:
    """What ``after`` needs of a job: it ran and exited 0."""
    return info.reason is JobReason.EXITED and info.exit_code == 0


def outcome(info: JobInfo) -> str:
    """How a job ended, in words: ``exited 1``, ``was cancelled``, ``killed by signal 9``."""
    if info.reason is JobReason.EXITED:
        return f"exited {info.exit_code}"
    if info.reason is JobReason.KILLED and info.signal is not None:
        return f"was killed by signal {info.signal}"
    return f"ended {info.reason}" + (f" ({info.error})" if info.error else "")
