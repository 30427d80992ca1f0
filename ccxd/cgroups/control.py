"""The object the supervisor is given: limits, groups, sampling, OOM verdicts, cleanup.

The supervisor calls, per job: :meth:`ResourceControl.limits_for` when the job is
made (a pre-hook may change ``job.limits`` afterwards), :meth:`prepare` right
before spawning (makes the group, returns the argv that joins it),
:meth:`started` with the spawned pid (returns the job's process tree),
:meth:`verdict` when the job ended (final sample, ``oom``), and :meth:`release`
when it is over (removes the group).  A backend error falls back to the none
backend with one log line; the daemon never fails because of cgroups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from ccxd.cgroups.admission import admission_block, stretch_factor
from ccxd.cgroups.base import Backend, CgroupError, JobCgroup
from ccxd.cgroups.join import wrap_argv
from ccxd.cgroups.limits import format_size, parse_size, resolve_limits
from ccxd.cgroups.none import NoneBackend, TreeGroup
from ccxd.cgroups.procfs import host_load, host_memory_available
from ccxd.cgroups.tree import GroupTree
from ccxd.cgroups.usage import next_usage
from ccxd.config import Config
from ccxd.errors import RpcError
from ccxd.proc.tree import ProcessTree
from ccxd.protocol import ErrorCode, JobReason, Limits, StartParams, Usage

__all__ = ["ControlledJob", "ResourceControl"]

log = logging.getLogger("ccxd.cgroups")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) or 1


_SAMPLE_RATE = 100
"""Most resource samples a second (about 1% of a core), however many jobs run."""
_SAMPLE_STEP = 0.25
"""Shortest pause between two batches of samples within a round."""

_IDLE_CLOSE = 1.0
"""Seconds after a job's end at which the backend closes what it keeps open for jobs, if none runs then."""
_REMOVE_TRIES = 40
_REMOVE_RETRY = 0.25


class ControlledJob(Protocol):
    """What resource control reads and sets on a job (the supervisor's ``Job``; cgroups sits below it)."""

    id: str
    cwd: str
    group: JobCgroup | None
    limits: Limits | None
    timeout: float | None
    timeout_basis: str | None
    usage: Usage | None
    stats_seq: int
    stop_reason: JobReason | None

    @property
    def finished(self) -> bool:
        """True once the job is over."""

    def notify(self) -> None:
        """Tell the job's watchers it changed (a new sample)."""


class ResourceControl:
    """Resource limits and accounting for every job of one daemon."""

    def __init__(self, config: Config, backend: Backend | None = None) -> None:
        self.config = config
        self.backend: Backend = backend if backend is not None else NoneBackend()
        self._jobs: dict[str, ControlledJob] = {}
        self._sampler: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._idle_close: asyncio.TimerHandle | None = None
        # Any: the supervisor's callback takes its own Job type, which is a ControlledJob.
        self.on_over_limit: Callable[[Any], None] = lambda job: None
        """Called when a job must end as ``oom`` (set by the supervisor)."""

    @classmethod
    def from_config(cls, config: Config, instance: str) -> ResourceControl:
        """Detect (or take the configured) backend; never raises."""
        from ccxd.cgroups.detect import make_backend

        try:
            backend = make_backend(config.cgroup_backend, instance)
        except CgroupError as exc:
            log.warning("%s; falling back to the none backend", exc)
            backend = NoneBackend(str(exc))
        log.info("resource backend: %s", backend.description)
        return cls(config, backend)

    def describe(self) -> str:
        """One line for ``daemon.status``."""
        return self.backend.description

    # -- per job -----------------------------------------------------------------

    def defaults(self) -> Limits:
        """The configured default limits."""
        c = self.config
        return Limits(
            memory=parse_size(c.default_memory) if c.default_memory is not None else None,
            cpus=c.default_cpus,
            pids=c.default_pids,
            io_weight=c.default_io_weight,
        )

    def limits_for(self, params: StartParams) -> Limits:
        """The limits a new job gets; raises INVALID_PARAMS for an impossible value."""
        try:
            return resolve_limits(params.memory, params.cpus, params.pids, params.io_weight, self.defaults())
        except ValueError as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"{exc} - at `$.params.memory`") from None

    def _fallback(self, exc: Exception) -> None:
        log.warning("cgroup backend %s failed (%s); falling back to the none backend", self.backend.name, exc)
        self.backend = NoneBackend(f"{self.backend.name} failed: {exc}")

    def prepare(self, job: ControlledJob, argv: list[str], env: dict[str, str]) -> list[str]:
        """Make the job's group; return the argv that starts the job inside it.

        Raises :class:`ccxd.proc.spawn.SpawnError` for a program that
        cannot run (the wrapper must not turn that into an exit status).
        """
        join_files = self.prepare_group(job)
        try:
            return wrap_argv(argv, join_files, job.cwd, env)
        except BaseException:
            self.release(job)
            raise

    def prepare_group(self, job: ControlledJob) -> list[str]:
        """Make the job's group; return the ``cgroup.procs`` files its first process joins.

        For a spawner that joins them itself between fork and exec (the job shim).
        """
        limits = job.limits if job.limits is not None else Limits()
        try:
            group = self.backend.create(job.id, limits)
        except (CgroupError, OSError) as exc:
            self._fallback(exc)
            group = self.backend.create(job.id, limits)
        job.group = group
        if group.unenforced:
            log.warning(
                "job %s: %s backend cannot enforce %s", job.id, self.backend.name, ", ".join(group.unenforced)
            )
        return group.join_files()

    def started(
        self,
        job: ControlledJob,
        pid: int,
        pgid: int,
        reaper: int | None = None,
        reaper_start: int | None = None,
    ) -> ProcessTree:
        """The job's process tree once ``pid`` runs; sampling begins.

        ``reaper`` is the job's shim, which adopts its orphans (None: this daemon);
        ``reaper_start`` its start time, if the caller has it.
        """
        group = job.group
        assert group is not None
        if isinstance(group, TreeGroup):
            # No cgroup to join: the group is the process tree.
            tree: ProcessTree = ProcessTree(job.id, pid, pgid, reaper, reaper_start)
            group.tree = tree
        else:
            tree = GroupTree(job.id, pid, pgid, group, reaper, reaper_start)
        self._jobs[job.id] = job
        self._ensure_sampler()
        return tree

    def adopt(
        self, job: ControlledJob, pid: int, pgid: int, reaper: int | None = None, cgroup: str | None = None
    ) -> ProcessTree:
        """The tree of a job an earlier daemon started (its group reopened, sampling resumed).

        ``cgroup`` is the group its record names.  Pass the ids of adopted jobs to
        :meth:`clean_leftovers` as ``keep`` first.
        """
        group = self.backend.open(job.id, cgroup)
        if group is None:  # no group (none backend, or it is gone): the tree alone
            group = NoneBackend().create(job.id, job.limits or Limits())
        if job.limits is not None:
            group.limits = job.limits
        job.group = group
        return self.started(job, pid, pgid, reaper)

    def verdict(self, job: ControlledJob, reason: JobReason) -> tuple[JobReason, str | None]:
        """Take the final sample; turn the reason into ``oom`` if the memory limit killed."""
        self._jobs.pop(job.id, None)
        group = job.group
        if group is None:
            return reason, None
        group.ended = True  # before the sample: a pool group's final reads go through its open files
        self._sample(job, group)
        if reason not in (JobReason.EXITED, JobReason.KILLED, JobReason.OOM):
            return reason, None  # a timeout or cancel is what the user should see
        try:
            kills = group.oom_kills()
        except CgroupError:
            kills = 0
        if kills == 0 and reason is not JobReason.OOM:
            return reason, None
        limit = job.limits.memory if job.limits is not None else None
        where = f"its memory limit of {format_size(limit)}" if limit is not None else "the memory available"
        return JobReason.OOM, f"out of memory: the job exceeded {where}"

    def release(self, job: ControlledJob) -> None:
        """Remove the job's group (now, or after killing what is still in it)."""
        self._jobs.pop(job.id, None)
        group = job.group
        if group is not None and self._idle_close is None:
            # At most one timer at a time: the backend closes its kept files within a
            # second of the daemon going idle, and keeps them while jobs come and go.
            self._idle_close = asyncio.get_running_loop().call_later(_IDLE_CLOSE, self._close_idle)
        if group is None or group.remove():
            return
        task = asyncio.get_running_loop().create_task(self._kill_and_remove(group))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _close_idle(self) -> None:
        self._idle_close = None
        self.backend.close_idle()

    @staticmethod
    async def _kill_and_remove(group: JobCgroup) -> None:
        # Killed processes stay in the group as zombies until the reaper's sweep
        # (once a second) collects orphans, so removal is retried for a while.
        for _ in range(_REMOVE_TRIES):
            try:
                await group.kill()
            except CgroupError as exc:
                log.warning("job %s: %s", group.job_id, exc)
            if group.remove():
                return
            await asyncio.sleep(_REMOVE_RETRY)
        log.warning("job %s: cgroup %s could not be removed", group.job_id, group.path)

    # -- admission and load -------------------------------------------------------

    def admission_block(self) -> str | None:
        """Why queued jobs must wait now (``admit_*`` thresholds), or None."""
        c = self.config
        if c.admit_min_memory is None and c.admit_max_load is None:
            return None
        min_memory = parse_size(c.admit_min_memory) if c.admit_min_memory is not None else None
        return admission_block(host_memory_available(), host_load(), _cpus(), min_memory, c.admit_max_load)

    def stretch(self, job: ControlledJob) -> None:
        """Lengthen an estimated or default timeout under load; say so in ``timeout_basis``."""
        if job.timeout is None or job.timeout_basis == "explicit" or self.config.timeout_stretch_max <= 1:
            return
        load = host_load()
        factor = stretch_factor(load, _cpus(), self.config.timeout_stretch_max)
        if factor <= 1.0:
            return
        job.timeout = round(job.timeout * factor, 3)
        job.timeout_basis = (
            f"{job.timeout_basis}, stretched ×{factor:.2f} (load {load:.2f} on {_cpus()} CPUs)"
        )
        log.info("job %s: timeout stretched to %gs (×%.2f under load)", job.id, job.timeout, factor)

    # -- leftovers -----------------------------------------------------------------

    async def clean_leftovers(self, keep: frozenset[str] = frozenset()) -> int:
        """Kill and remove groups an earlier run left (except ``keep``, adopted jobs)."""
        removed = 0
        for job_id in self.backend.leftovers():
            if job_id in keep:
                continue
            group = self.backend.open(job_id)
            if group is not None:
                removed += await _clear(group, f"job {job_id}", "its cgroup")
        # Pool groups (v1) are not named after their job: those no adopted job uses go too.
        in_use = [j.group.path for j in self._jobs.values() if j.group is not None and j.group.path]
        for group in self.backend.strays(in_use):
            removed += await _clear(group, "", f"cgroup {group.path}")
        if removed:
            log.info("removed %d job cgroup(s) left by an earlier run", removed)
        return removed

    # -- sampling ------------------------------------------------------------------

    def _ensure_sampler(self) -> None:
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(self._sample_loop(), name="cgroup-sampler")

    async def _sample_loop(self) -> None:
        while self._jobs:
            jobs = list(self._jobs.values())
            # A sample reads about ten files (~0.1 ms).  Every job is sampled once per
            # stats_interval, or less often when so many run that this would cost more
            # than _SAMPLE_RATE samples a second; a round is spread over steps so the
            # loop never stalls for all of them at once.
            round_time = max(self.config.stats_interval, len(jobs) / _SAMPLE_RATE)
            steps = max(1, min(len(jobs), int(round_time / _SAMPLE_STEP)))
            per_step = -(-len(jobs) // steps)
            for first in range(0, len(jobs), per_step):
                await asyncio.sleep(round_time / steps)
                for job in jobs[first : first + per_step]:
                    if job.group is not None and not job.finished and job.id in self._jobs:
                        self._sample(job, job.group)
                        self._check_limits(job, job.group)

    def _sample(self, job: ControlledJob, group: JobCgroup) -> None:
        try:
            raw = group.sample()
        except (CgroupError, OSError, ValueError) as exc:
            log.debug("job %s: sample failed: %s", job.id, exc)
            return
        job.usage = next_usage(job.usage, raw, time.time())
        job.stats_seq += 1
        job.notify()

    def _check_limits(self, job: ControlledJob, group: JobCgroup) -> None:
        if job.stop_reason is not None or job.usage is None:
            return
        limit = job.limits.memory if job.limits is not None else None
        if isinstance(group, TreeGroup):
            if limit is not None and job.usage.memory > limit:
                group.heuristic_oom_kills += 1
                used = format_size(job.usage.memory)
                log.info("job %s: %s resident > limit %s", job.id, used, format_size(limit))
                self.on_over_limit(job)
            return
        with contextlib.suppress(CgroupError):
            if group.oom_kills() > 0:
                # v1 kills one process; the job as a whole ends, as on v2 (memory.oom.group).
                self.on_over_limit(job)

    async def close(self) -> None:
        """Stop sampling; let pending removals finish; remove the backend's own groups."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self._idle_close is not None:
            self._idle_close.cancel()
            self._idle_close = None
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5)
        self.backend.close()


async def _clear(group: JobCgroup, who: str, where: str) -> int:
    """Kill what an earlier run left in ``group`` and remove it; 1 if it is gone.

    Log lines start with ``who`` (``job <id>: ``), if any, and name the group as ``where``.
    """
    prefix = f"{who}: " if who else ""
    try:
        if group.pids():
            log.warning("%skilling processes left in %s by an earlier run", prefix, where)
            await group.kill()
    except CgroupError as exc:
        log.warning("%s%s: %s", prefix, where, exc)
    return 1 if group.remove() else 0
