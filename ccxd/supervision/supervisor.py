"""The supervisor: admits, queues, starts, watches, times out and stops jobs."""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import functools
import logging
import os
import secrets
import signal as signal_mod
import time
from collections.abc import Awaitable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ccxd import paths
from ccxd.cgroups.control import ResourceControl
from ccxd.config import Config
from ccxd.errors import RpcError
from ccxd.output.chunker import Utf8Chunker
from ccxd.output.follower import FollowedSpool
from ccxd.output.log import Chunk, OutputLog
from ccxd.output.spool import FLUSH_INTERVAL, Spool, remove_spool, spooled_jobs
from ccxd.protocol import (
    ErrorCode,
    HookOutcome,
    JobInfo,
    JobReason,
    JobState,
    Limits,
    ListParams,
    StartParams,
)
from ccxd.redact import redact_text, secret_values
from ccxd.supervision import adoption, jobfile, shimjob
from ccxd.supervision.deadline import LimitTimer, guard_note
from ccxd.supervision.diskqueue import DiskQueue
from ccxd.supervision.gate import JobGate, OpenGate
from ccxd.supervision.job import Job
from ccxd.supervision.observer import JobKind
from ccxd.supervision.queue import JobQueue, priority_value
from ccxd.supervision.reaper import ExitStatus, Reaper
from ccxd.supervision.shell import resolve_shell
from ccxd.supervision.shim import find_shim
from ccxd.supervision.shimserver import ShimServer
from ccxd.supervision.spawn import SpawnError, spawn, write_input
from ccxd.supervision.spoolwatch import SpoolWatch
from ccxd.worktree.manager import Worktrees

if TYPE_CHECKING:
    from ccxd.history.recorder import Recorder
    from ccxd.hooks.runner import HookRunner

__all__ = ["Supervisor", "new_job_id", "parse_signal"]

log = logging.getLogger("ccxd.supervision")

# Environment every job gets: unbuffered Python output, and Node never waiting on a TTY.
_JOB_ENV_DEFAULTS = {"PYTHONUNBUFFERED": "1", "NODE_NO_READLINE": "1"}
# After the leader exits and the tree is gone, how long to wait for pipes to close.
_PIPE_LINGER = 2.0

# Seconds between looks at memory and load while admission holds queued jobs back.
_ADMIT_RECHECK = 1.0

_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


_last_id = [0, 0]  # milliseconds and tail of the last id made here


def new_job_id() -> str:
    """A short id that sorts by creation time (milliseconds) and is unique.

    Like a monotonic ULID: the tail is random for the first id of a
    millisecond and counts up for the others, so ids made here never repeat (20
    random bits alone collided once in a few thousand ids made in one
    millisecond) and sort in the order they were made, even if the clock steps back.
    """
    ms = int(time.time() * 1000)
    last_ms, last_tail = _last_id
    if ms > last_ms:
        tail = secrets.randbits(19)  # room to count up within the millisecond
    elif last_tail < (1 << 20) - 1:
        ms, tail = last_ms, last_tail + 1
    else:
        ms, tail = last_ms + 1, secrets.randbits(19)
    _last_id[:] = [ms, tail]
    stamp = ""
    for _ in range(9):
        ms, rem = divmod(ms, 32)
        stamp = _ID_ALPHABET[rem] + stamp
    return stamp + "".join(_ID_ALPHABET[(tail >> shift) & 31] for shift in (15, 10, 5, 0))


def parse_signal(value: int | str) -> int:
    """A signal number from ``9``, ``"9"``, ``"KILL"`` or ``"SIGKILL"``."""
    if isinstance(value, int) or value.strip().isdigit():
        num = int(value)
        try:
            signal_mod.Signals(num)
        except ValueError:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"unknown signal number {num}") from None
        return num
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal_mod.Signals[name])
    except KeyError:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"unknown signal {value!r}") from None


class Supervisor:
    """Owns every job of this daemon."""

    def __init__(
        self,
        config: Config,
        reaper: Reaper,
        spool_dir: Path,
        recorder: Recorder | None = None,
        resources: ResourceControl | None = None,
        hooks: HookRunner | None = None,
        jobs_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.hooks = hooks
        self.recorder = recorder
        self.reaper = reaper
        self.spool_dir = spool_dir
        self.jobs_dir = jobs_dir or spool_dir
        """Job files and exit statuses: runtime state, best on tmpfs (``paths.jobs_dir``)."""
        self.node = config.resolved_node_id()
        self.jobs: dict[str, Job] = {}
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._spooled: dict[str, tuple[int, int]] = {}
        """Finished jobs with a spool, oldest first: its size and the store writer's mark."""
        self._spooled_bytes = 0
        self.queue: JobQueue[Job] = JobQueue(self._configured_parallel, self._group_note)
        """Queued jobs in start order: priorities, groups, dependencies (queue.py, no I/O)."""
        self._queued: dict[str, Job] = {}
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True
        self._base_env = dict(os.environ)
        self._base_secrets = secret_values(self._base_env)  # never shown in a job's record
        self.default_shell = resolve_shell(config.shell, fallback=True) or "/bin/sh"
        self.gate: JobGate = OpenGate()
        """Decides when a queued job may start (the Claude limits plug in here)."""
        # Jobs under a shim survive this daemon and are adopted by the next (shimjob.py).
        self.shim = find_shim(config.shim_path) if config.job_shim else None
        if config.job_shim and self.shim is None:
            log.warning("no ccxd-shim: jobs end with the daemon (build: python -m ccxd.supervision.shim)")
        self._watch: SpoolWatch | None = None
        self._shims: ShimServer | None = None
        """Forks job shims without blocking the loop (shimserver.py); started with the first job."""
        self.disk = DiskQueue()
        """Spool files are removed here, in order, off the loop."""
        self.job_disk = DiskQueue("ccxd-jobs", inline=paths.in_memory(self.jobs_dir))
        """Job files and adoption records are written and removed here, in order, off the loop."""
        self._job_file_written: dict[str, asyncio.Future[None]] = {}
        self._job_tasks: dict[str, asyncio.Task[None]] = {}
        self._left: set[str] = set()
        """Jobs a ``leave`` shutdown left running for the next daemon: not finished here."""
        self.resources = resources if resources is not None else ResourceControl(config)
        """Limits, cgroups, samples and admission thresholds (ccxd/cgroups/control.py)."""
        self.resources.on_over_limit = lambda job: self._stop(job, JobReason.OOM)
        self._admit_timer: asyncio.TimerHandle | None = None
        self.kinds: list[JobKind] = []
        """Job kinds (Claude) that shape requests and watch their jobs' output."""
        self.worktrees = Worktrees(
            config.resolved_state_dir() / "worktrees",
            reaper,
            lambda: {j.cwd for j in self.jobs.values() if j.params.worktree and not j.finished},
        )
        """Jobs' git worktrees (``job.start`` ``worktree``; ccxd/worktree/)."""

    # -- queries --------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job with this id, or a JOB_NOT_FOUND error."""
        job = self.jobs.get(job_id)
        if job is None:
            raise RpcError.job_not_found(job_id)
        return job

    def list_jobs(self, params: ListParams) -> list[JobInfo]:
        """Jobs newest first, filtered."""
        out = []
        for job in reversed(self.jobs.values()):
            if params.state is not None and job.state != params.state:
                continue
            if params.session is not None and job.params.session != params.session:
                continue
            out.append(job.info())
            if len(out) >= params.limit:
                break
        return out

    def counts(self) -> dict[str, int]:
        """Number of jobs in each state."""
        counts = dict.fromkeys((s.value for s in JobState), 0)
        for job in self.jobs.values():
            counts[job.state.value] += 1
        return counts

    @property
    def active_jobs(self) -> Iterable[Job]:
        """Jobs that are queued or have processes."""
        return [j for j in self.jobs.values() if not j.finished]

    # -- starting -------------------------------------------------------------

    async def start(self, params: StartParams, peer: str = "") -> Job:
        """Admit a job: start it now or queue it.  Raises :class:`RpcError`."""
        if not self._accepting:
            raise RpcError(ErrorCode.SHUTTING_DOWN, "ccxd is shutting down; no new jobs")
        params = self._prepare(params)
        stored_ends = await self._stored_dependencies(params)
        job_id = new_job_id()
        outcomes: builtins.list[HookOutcome] = []
        notes: dict[str, object] = {}
        if self.hooks is not None:  # may change the params, or refuse (HOOK_REFUSED)
            params, outcomes, notes = await self.hooks.pre(params, job_id, peer)
        group = self.config.groups.get(params.group or "")
        worktree = None
        if params.worktree or (group is not None and group.worktree):  # a git worktree of its own
            worktree, cwd = await self.worktrees.create(params.cwd or self._base_env.get("HOME", "/"), job_id)
            params = msgspec.structs.replace(params, cwd=cwd, worktree=True)
        timeout, basis, silence = await self._timeout_for(params)
        job = self._make_job(params, peer, job_id)
        job.worktree = worktree
        job.timeout, job.timeout_basis, job.timeout_silence = timeout, basis, silence
        job.hooks, job.annotations = outcomes, notes
        job.stored_ends = stored_ends
        self.admit(job)
        written = self._job_file_written.get(job.id)
        if written is not None:
            # The reply tells a client the job exists: it must, even if ccxd is killed
            # right after.  Only this request waits (in the I/O thread); the loop goes on.
            await asyncio.shield(written)
        return job

    def admit(self, job: Job) -> None:
        """Start a job made by :meth:`make_job` now, or queue it.  Raises :class:`RpcError`."""
        if not self._accepting:
            _discard(job)
            raise RpcError(ErrorCode.SHUTTING_DOWN, "ccxd is shutting down; no new jobs")
        try:
            after, after_any, failed = self._dependencies(job)
        except RpcError:
            _discard(job)
            raise
        job.queue_groups = self._groups_of(job)
        if failed is not None:  # a job it needed to succeed has not: it ends at once
            self.jobs[job.id] = job
            self._job_file_written[job.id] = self._save_job_file(job)
            self._end_queued(job, JobReason.DEPENDENCY_FAILED, failed)
            return
        slot = self._running < self.config.max_concurrent_jobs
        if (
            slot
            and not (after or after_any)
            and self.queue.open(job.queue_groups)
            and self._admitted(job)
            and self.gate.may_start(job)
        ):
            self.jobs[job.id] = job
            self._job_file_written[job.id] = self._save_job_file(job)
            self.queue.started(job.queue_groups)
            self._launch(job)
        else:
            if len(self.queue) >= self.config.max_queued_jobs:
                _discard(job)
                raise RpcError(
                    ErrorCode.QUEUE_FULL,
                    f"queue full: {len(self.queue)} jobs waiting (max_queued_jobs)",
                    {"queued": len(self.queue)},
                )
            self.jobs[job.id] = job
            self._job_file_written[job.id] = self._save_job_file(job)
            self._queued[job.id] = job
            priority = priority_value(job.params.priority)
            position = self.queue.add(
                job.id, job, priority=priority, groups=job.queue_groups, after=after, after_any=after_any
            )
            self._show_wait(job, position)
            if position is not None:
                self._renumber(position)  # the jobs behind it moved back
            log.info("job %s queued at position %s", job.id, position or f"- ({job.wait_reason})")
            self._record(job)

    def _groups_of(self, job: Job) -> tuple[str, ...]:
        """The job's queue groups: the one it names, then implicit ones (``claude``)."""
        named = (job.params.group,) if job.params.group is not None else ()
        return named + tuple(g for g in self.gate.implicit_groups(job) if g not in named)

    def _configured_parallel(self, name: str) -> int | None:
        configured = self.config.groups.get(name)
        if configured is not None and configured.parallel is not None:
            return configured.parallel
        rule = self.gate.group_rule(name)
        return rule[0] if rule is not None else None

    def _group_note(self, name: str) -> str | None:
        rule = self.gate.group_rule(name)
        return rule[1] if rule is not None else None

    async def _stored_dependencies(self, params: StartParams) -> dict[str, JobInfo]:
        """The jobs named in ``after``/``after_any`` that only the store still knows."""
        found: dict[str, JobInfo] = {}
        for dep in dict.fromkeys((*params.after, *params.after_any)):
            if dep in self.jobs or self.recorder is None:
                continue
            try:
                info = await asyncio.wait_for(self.recorder.store.get_job(dep), self.config.store_timeout)
            except Exception as exc:  # the store is down: say so rather than "unknown"
                why = f"job {dep} (after) is not in memory and history is unavailable"
                raise RpcError(ErrorCode.STORE_UNAVAILABLE, why) from exc
            if info is not None:
                found[dep] = info
        return found

    def _dependencies(self, job: Job) -> tuple[list[str], list[str], str | None]:
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
                        raise RpcError(ErrorCode.INVALID_PARAMS, f"unknown job {dep} - at `$.params.{field}`")
                if info is None or info.state is not JobState.FINISHED:
                    pending.append(dep)
                elif field == "after" and failed is None and not _succeeded(info):
                    failed = f"job {dep} (after) {_outcome(info)}"
        cycle = self.queue.cycle(job.id, after + after_any)
        if cycle is not None:
            raise RpcError(ErrorCode.INVALID_PARAMS, "dependency cycle: " + " waits for ".join(cycle))
        return after, after_any, failed

    def _end_queued(self, job: Job, reason: JobReason, error: str | None = None) -> None:
        """End a job that never ran (cancelled, or a dependency failed); its error hooks follow."""
        self.queue.remove(job.id)
        self._queued.pop(job.id, None)
        job.finish(reason, error=error)
        self.gate.finished(job)
        self._record(job)
        self._retire(job)
        self._dependency_ended(job)
        if self.hooks is not None:
            # A queued job finishes at once; its error hooks follow and update the record.
            task = asyncio.get_running_loop().create_task(self._hooks_after_cancel(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _dependency_ended(self, job: Job) -> None:
        """Release or fail the queued jobs that wait for ``job``, which ended."""
        if not self.queue.awaited(job.id):
            return
        if job.retried_by is not None and job.retried_by in self._queued:
            self.queue.transfer(job.id, job.retried_by)  # its retry attempt decides for them
            return
        info = job.info()
        ready, failed = self.queue.ended(job.id, _succeeded(info))
        for waiter_id in failed:
            waiter = self._queued.get(waiter_id)
            if waiter is not None:
                why = f"job {job.id} (after) {_outcome(info)}"
                self._end_queued(waiter, JobReason.DEPENDENCY_FAILED, why)
        for waiter_id in ready:
            waiter = self._queued.get(waiter_id)
            if waiter is not None:
                self._show_wait(waiter, waiter.queue_position)

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
            job._notify()

    def _renumber(self, start: int = 1) -> None:
        # Every queued job behind a change (one pass, as cheap as can be: the queue may be long).
        for position, job in self.queue.positions(start):
            if job.queue_groups:
                self._show_wait(job, position)  # its group may have filled or paused
            elif job.queue_position != position:
                job.queue_position = position
                job._notify()

    async def _timeout_for(self, params: StartParams) -> tuple[float | None, str, float | None]:
        """The timeout, its basis, and its silence window when it is an estimate (a guard)."""
        if params.timeout == 0:
            return None, "none (timeout 0)", None
        if params.timeout is not None:
            return params.timeout, "explicit", None
        if self.recorder is None:
            c = self.config.default_timeout
            return c, "default_timeout" if c is not None else "none", None
        est = await self.recorder.timeout_for(params.command or "")
        return est.timeout, est.basis, est.silence

    def _save_job_file(self, job: Job, info: JobInfo | None = None) -> asyncio.Future[None]:
        # Before anything runs, and again when it ends: the store is written behind,
        # and a daemon killed in between must not lose the job or its outcome.  The
        # future is done once it is written (or failed): _run_inner waits for it
        # before the job's spawn.
        directory, info = self.jobs_dir, info or job.info()

        def save() -> None:
            try:
                jobfile.save(directory, info)
            except OSError as exc:
                log.warning("job %s: cannot write its job file (%s); a crash now could lose it", info.id, exc)

        return self.job_disk.submit(save)

    def _record(self, job: Job) -> None:
        if self.recorder is not None:
            if job.finished:
                info = job.info()
                self._save_job_file(job, info)
                self.recorder.job_finished(info)
            else:
                self.recorder.job_changed(job.info())

    def make_job(self, params: StartParams, peer: str = "", job_id: str | None = None) -> Job:
        """A job for ``params`` (not admitted yet); ``job_id`` reuses an id (a restored job)."""
        return self._make_job(params, peer, job_id, reused=job_id is not None)

    def _prepare(self, params: StartParams) -> StartParams:
        try:
            for kind in self.kinds:
                params = kind.prepare(params)
        except ValueError as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, str(exc)) from None
        if params.command is None:
            raise RpcError(ErrorCode.INVALID_PARAMS, 'command is required (or kind: "claude" with a prompt)')
        return params

    def _make_job(
        self, params: StartParams, peer: str, job_id: str | None = None, *, reused: bool = False
    ) -> Job:
        """``reused``: ``job_id`` was an earlier run's (files of that run may be left)."""
        params = self._prepare(params)
        _check_text(params)
        job_id = job_id or new_job_id()
        if isinstance(params.command, str):
            wanted = params.shell or self.config.shell
            shell = (
                self.default_shell
                if params.shell is None
                else resolve_shell(_alias_shell(wanted), fallback=False)
            )
            if shell is None:
                raise RpcError(ErrorCode.INVALID_PARAMS, f"shell {wanted!r} not found")
            argv = [shell, "-c", params.command]
        else:
            shell = None
            argv = list(params.command or ())
        cwd = params.cwd or self._base_env.get("HOME", "/")
        # Neither kind of spool makes a file here: the shim creates its spool when the
        # job first writes, and a pipe job's Spool does the same.
        spool: Spool
        if self.shim is not None:
            spool = FollowedSpool(self.spool_dir, job_id, self.config.spool_max_bytes)
        else:
            spool = Spool(self.spool_dir, job_id, self.config.spool_max_bytes)
        job = self._build_job(
            params, peer, job_id, argv, shell, cwd, OutputLog(self.config.buffer_size, spool)
        )
        job.reused_id = reused
        if params.worktree:  # a Claude retry runs in the tree of the attempt it retries
            job.worktree = next((j.worktree for j in self.jobs.values() if j.worktree and j.cwd == cwd), None)
            if job.worktree is not None:
                job.worktree = msgspec.structs.replace(job.worktree, head=None, diffstat=None, dirty=None)
        return job

    def _build_job(
        self,
        params: StartParams,
        peer: str,
        job_id: str,
        argv: list[str],
        shell: str | None,
        cwd: str,
        out: OutputLog,
        limits: Limits | None = None,
    ) -> Job:
        """The one factory of jobs, new and adopted: limits, then each kind's ``made`` (its monitor).

        ``params`` are prepared already; ``limits``, when given, are those in force
        (an adopted job's, after pre-hooks), else they come from ``params``.
        """
        idle = params.idle_timeout if params.idle_timeout is not None else self.config.idle_timeout
        job = Job(
            job_id,
            params,
            argv=argv,
            shell=shell,
            cwd=cwd,
            log=out,
            node=self.node,
            peer=peer,
            timeout=None,
            idle_timeout=idle,
        )
        job.limits = limits if limits is not None else self.resources.limits_for(params)
        job.base_secrets = self._base_secrets
        for kind in self.kinds:
            kind.made(job)
        return job

    def _launch(self, job: Job) -> None:
        self._running += 1
        self.gate.started(job)
        job.move(JobState.STARTING)
        self._start_task(job, self._run(job))

    def _start_task(self, job: Job, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"job-{job.id}")
        self._tasks.add(task)
        self._job_tasks[job.id] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: self._job_tasks.pop(job.id, None))

    def kick(self) -> None:
        """Start whatever queued jobs may start now (the gate calls this when a wait ends)."""
        self._next_from_queue()

    def _next_from_queue(self) -> None:
        # Best first (priority, then age); jobs their groups or the gate hold back let others pass.
        free = self.config.max_concurrent_jobs - self._running
        first = self.queue.first_ready()
        if free > 0 and first is not None and self._admitted(first):
            for job in self.queue.pick(free, self._may_start):
                self._queued.pop(job.id, None)
                if job.finished:
                    self.queue.finished(job.queue_groups)
                    continue
                job.queue_position = None
                if job.queue_wait is not None:
                    if job.wait_reason == job.queue_wait:
                        job.wait_reason = None
                    job.queue_wait = None
                self._launch(job)
        self._renumber()

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
            job._notify()
        if self._admit_timer is None:

            def again() -> None:
                self._admit_timer = None
                self._next_from_queue()

            self._admit_timer = asyncio.get_running_loop().call_later(_ADMIT_RECHECK, again)
        return False

    # -- running --------------------------------------------------------------

    async def _run(self, job: Job, inner: Coroutine[object, object, None] | None = None) -> None:
        try:
            await (self._run_inner(job) if inner is None else inner)
        except Exception:  # a bug must not leave a job "running" forever
            log.exception("job %s: supervisor error", job.id)
            if not job.finished:
                if job.tree is not None:
                    await job.tree.kill()
                job.settle(JobReason.KILLED, error="internal supervisor error")
        finally:
            if not job.finished and job.id not in self._left:
                if job.worktree is not None:  # what it changed, in its final record
                    job.worktree = await self.worktrees.finish(job.id, job.worktree)
                await self._after_hooks(job)
                job.move(JobState.FINISHED)
            self._running -= 1
            if job.id not in self._left:
                self.queue.finished(job.queue_groups)
            self.gate.finished(job)
            # A job left running (shutdown "leave") keeps its group and is recorded as it is.
            if job.finished:
                self.resources.release(job)
            self._record(job)
            if job.finished:
                self._retire(job)
                self._dependency_ended(job)
            self._next_from_queue()

    async def _run_inner(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        written = self._job_file_written.pop(job.id, None)
        if written is not None:
            await written  # no process before its job file
        if job.stop_reason is not None:
            job.settle(job.stop_reason)
            return
        env = dict(self._base_env)
        env.update(_JOB_ENV_DEFAULTS)
        env.update(job.params.env)
        env.update(job.extra_env)
        env["CCXD_JOB_ID"] = job.id
        stdin_data = job.params.input.encode() if job.params.input is not None else None
        if self.shim is not None and isinstance(job.log.spool, FollowedSpool):
            await self._run_shim(job, self.shim, job.log.spool, env, stdin_data)
            return
        try:
            argv = self.resources.prepare(job, job.argv, env)
            proc = spawn(argv, job.cwd, env, with_input=stdin_data is not None)
        except SpawnError as exc:
            log.info("job %s failed to start: %s", job.id, redact_text(str(exc), job.secrets()))
            job.settle(JobReason.FAILED_TO_START, error=str(exc))
            return
        exited = self.reaper.watch(proc.pid)
        job.pid, job.pgid = proc.pid, proc.pgid
        job.tree = self.resources.started(job, proc.pid, proc.pgid)
        self.resources.stretch(job)
        job.started_at = time.time()
        job.started_mono = job.last_output_mono = time.monotonic()
        job.move(JobState.RUNNING)
        self._record(job)
        log.debug("job %s started: pid %d %s", job.id, proc.pid, _short(job.shown_argv()))
        if job.observer is not None:
            job.observer.started(lambda reason: self._stop(job, reason))
        if stdin_data is not None and proc.stdin is not None:
            writer = loop.create_task(write_input(proc.stdin, stdin_data))
            self._tasks.add(writer)
            writer.add_done_callback(self._tasks.discard)

        eof = [loop.create_future(), loop.create_future()]
        for stream, fd in enumerate((proc.stdout, proc.stderr)):
            self._read_pipe(job, stream, fd, eof[stream])
        timers = self._arm_timers(job)
        try:
            status = await exited
            # The leader is gone; anything it left behind goes too.
            if not job.tree.nothing_left(self.reaper.watching) and job.tree.members():
                await job.tree.terminate(self.config.kill_grace)
            _, pending = await asyncio.wait(eof, timeout=_PIPE_LINGER)
            for fut in pending:
                fut.cancel()  # a process we could not find still holds the pipe
        finally:
            for t in timers:
                t.cancel()
        if job.observer is not None:
            job.observer.exited(status.code, status.signal)
        self._finish_exited(job, status)

    def _finish_exited(self, job: Job, status: ExitStatus) -> None:
        if job.stop_reason is not None:
            reason = job.stop_reason
        elif status.signal is not None:
            reason = JobReason.KILLED
        else:
            reason = JobReason.EXITED
        reason, error = self.resources.verdict(job, reason)
        if error is None and reason is job.stop_reason:
            error = job.stop_note
        job.settle(reason, exit_code=status.code, signal=status.signal, error=error)
        # One line per job at info, when it ends (like an access log); its start is at debug.
        log.info(
            "job %s finished: %s (%s) in %.3fs: pid %s %s",
            job.id,
            reason,
            f"exit {status.code}" if status.signal is None else f"signal {status.signal}",
            job.duration or 0.0,
            job.pid,
            _short(job.shown_argv()),
        )

    async def _after_hooks(self, job: Job) -> None:
        """Post and error hooks; they are bounded by their timeouts and never raise."""
        if self.hooks is None:
            return
        try:
            await self.hooks.finished(job)
        except Exception:
            log.exception("job %s: hooks failed", job.id)

    def _read_pipe(self, job: Job, stream: int, fd: int, eof: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        chunker = Utf8Chunker(self.config.chunk_size)
        size = self.config.chunk_size
        spool = job.log.spool
        flush_timer: list[asyncio.TimerHandle] = []

        def flush() -> None:
            flush_timer.clear()
            if spool is not None and not spool.cut:
                spool.flush()

        def append(piece: bytes) -> None:
            self._append_output(job, stream, piece)
            if spool is not None and spool.pending and not flush_timer:
                # The tail of a burst reaches the disk shortly after the burst ends.
                flush_timer.append(loop.call_later(FLUSH_INTERVAL, flush))

        def on_readable() -> None:
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                for piece in chunker.feed(data):
                    append(piece)
                return
            for piece in chunker.flush():
                append(piece)
            done()

        def done() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if not eof.done():
                eof.set_result(None)

        def on_cancel(fut: asyncio.Future[None]) -> None:
            if fut.cancelled():
                loop.remove_reader(fd)
                for piece in chunker.flush():
                    append(piece)
                os.close(fd)

        eof.add_done_callback(on_cancel)
        loop.add_reader(fd, on_readable)

    def _arm_timers(self, job: Job) -> builtins.list[LimitTimer]:
        """The job's timeout and idle timeout (deadline.py), counted from its start."""
        loop = asyncio.get_running_loop()
        timers: list[LimitTimer] = []
        if job.timeout is not None:
            after, silence = job.timeout, job.timeout_silence

            def timed_out(elapsed: float, quiet: float) -> None:
                note = None if silence is None else guard_note(after, silence, elapsed, quiet)
                self._stop(job, JobReason.TIMEOUT, note)

            timers.append(LimitTimer(loop, job, after, silence, timed_out, spare_paused=True))
        if job.idle_timeout is not None:
            idle = functools.partial(self._stop, job, JobReason.IDLE_TIMEOUT)
            timers.append(LimitTimer(loop, job, 0.0, job.idle_timeout, lambda _e, _q: idle()))
        return timers

    def _stop(self, job: Job, reason: JobReason, note: str | None = None) -> None:
        """Begin stopping ``job`` for ``reason`` (first reason wins); ``note`` goes to its record's error."""
        if job.finished or job.stop_reason is not None:
            return
        job.stop_reason, job.stop_note = reason, note
        log.info("job %s: stopping (%s%s)", job.id, reason, f": {note}" if note else "")
        self._terminate(job)

    def _terminate(self, job: Job) -> None:
        if job.tree is not None:
            task = asyncio.get_running_loop().create_task(job.tree.terminate(self.config.kill_grace))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _append_output(self, job: Job, stream: int, data: bytes | int) -> Chunk:
        """The one place a job's output enters its log (and the store).

        ``data`` is the bytes, or the length of a chunk that is in the job's
        spool already (the shim wrote it): its bytes are read only when needed.
        """
        out = job.log
        chunk = out.append(stream, data) if isinstance(data, bytes) else out.append_spooled(stream, data)
        if self.recorder is not None:
            self.recorder.output(job.id, chunk)
        if job.observer is not None:
            job.observer.output(stream, chunk)
        return chunk

    # -- jobs under a shim (adoptable) ----------------------------------------

    def _shim_server(self, shim: str) -> ShimServer | None:
        if self._shims is None and self.config.shim_server:
            self._shims = ShimServer(shim, self.reaper)
        return self._shims

    def _spool_watch(self) -> SpoolWatch:
        if self._watch is None:
            self._watch = SpoolWatch(asyncio.get_running_loop(), self.spool_dir, self.jobs_dir)
        return self._watch

    async def _run_shim(
        self, job: Job, shim: str, spool: FollowedSpool, env: dict[str, str], stdin_data: bytes | None
    ) -> None:
        exit_file = shimjob.exit_path(self.jobs_dir, job.id)
        if job.reused_id:  # a restored job must not see its earlier run's status or output
            for path in (exit_file, spool.index_path, spool.data_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        try:
            join_files = self.resources.prepare_group(job)
            started = await shimjob.start_shim(
                self._shim_server(shim),
                shim,
                job.argv,
                job.cwd,
                env,
                spool,
                exit_file,
                self.config.chunk_size,
                stdin_data,
                join_files,
            )
        except SpawnError as exc:
            log.info("job %s failed to start: %s", job.id, redact_text(str(exc), job.secrets()))
            job.settle(JobReason.FAILED_TO_START, error=str(exc))
            return
        shim_exited = started.exited if started.exited is not None else self.reaper.watch(started.pid)
        shim_start = started.start if started.start is not None else shimjob.start_time(started.pid)
        try:
            pid = await shimjob.read_report(started, job.argv, job.cwd)
        except SpawnError as exc:
            await shim_exited  # the shim exits after its error report
            started.link.close()
            log.info("job %s failed to start: %s", job.id, redact_text(str(exc), job.secrets()))
            job.settle(JobReason.FAILED_TO_START, error=str(exc))
            return
        job.pid = job.pgid = pid
        job.tree = self.resources.started(job, pid, pid, reaper=started.pid, reaper_start=shim_start)
        started.link.on_gone(job.tree.forget_reaper)
        self.resources.stretch(job)
        job.shim_pid = started.pid
        job.started_at = time.time()
        job.started_mono = job.last_output_mono = time.monotonic()
        # The adoption record is on disk before anyone hears that the job runs: a
        # daemon killed after job.started leaves a job the next one adopts.
        info = msgspec.structs.replace(job.info(), state=JobState.RUNNING)
        record = shimjob.AdoptRecord(
            info, started.pid, shim_start, job.tree.leader_start, adoption.start_of(job)
        )
        await self.job_disk.submit(functools.partial(_save_record, self.jobs_dir, record))
        job.move(JobState.RUNNING)
        self._record(job)
        log.debug("job %s started: pid %d (shim %d) %s", job.id, pid, started.pid, _short(job.shown_argv()))
        if job.observer is not None:
            job.observer.started(lambda reason: self._stop(job, reason))
        if job.stop_reason is not None:
            self._terminate(job)  # cancelled while the shim was starting it
        await self._follow_shim(job, spool, started.pid, shim_exited, started.link)

    async def _follow_shim(
        self,
        job: Job,
        spool: FollowedSpool,
        shim_pid: int,
        shim_gone: Awaitable[object],
        link: shimjob.ShimLink | None = None,
    ) -> None:
        """Take in the job's output as its shim writes it, until the shim is gone.

        ``link`` is the pipe on which the shim sends what the spool could not take
        (past ``spool_max_bytes``, a full disk) and the exit status; only the
        daemon that started the shim has it.  Without it (an adopted job) the exit
        status comes from the exit file.
        """
        loop = asyncio.get_running_loop()
        exit_file = shimjob.exit_path(self.jobs_dir, job.id)
        if link is not None:
            link.attach(functools.partial(self._overflow_frame, job, spool))
            leader_exited = link.leader_exited
        else:
            leader_exited = loop.create_future()

        pending: list[asyncio.Handle] = []

        def on_output() -> None:
            if not pending:  # else a continuation is due and takes this output too
                step()

        def step() -> None:
            pending.clear()
            if self._take_output(job, spool):
                pending.append(loop.call_soon(step))

        def on_exit() -> None:
            if not leader_exited.done() and os.path.exists(exit_file):
                leader_exited.set_result(None)

        watch = self._spool_watch()
        watch.follow(job.id, on_output, on_exit if link is None else None)
        on_output()
        if link is None:
            on_exit()
        shim_task: asyncio.Future[Any] = asyncio.ensure_future(shim_gone)
        timers = self._arm_timers(job)
        try:
            if not (leader_exited.done() or shim_task.done()):
                first: list[asyncio.Future[Any]] = [leader_exited, shim_task]
                await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            assert job.tree is not None
            # The leader is gone; anything it left behind goes too.  Once the shim is
            # reaped its orphans are ours, so nothing_left() can spare the /proc scan
            # that members() falls back to without a live shim.
            if not (shim_task.done() and job.tree.nothing_left(self.reaper.watching)) and job.tree.members():
                await job.tree.terminate(self.config.kill_grace)
            # The shim ends once the pipes close; a process outside the job may hold them.
            for sig in (signal_mod.SIGTERM, signal_mod.SIGKILL):
                if shim_task.done():
                    break
                done, _ = await asyncio.wait([shim_task], timeout=_PIPE_LINGER)
                if done or (link is not None and link.read_now()):
                    break  # (read_now: a pooled shim may have ended the job since, and taken another)
                log.warning("job %s: shim %d waits for its pipes; sending %s", job.id, shim_pid, sig.name)
                with contextlib.suppress(OSError):
                    os.kill(shim_pid, sig)
            await shim_task
        except asyncio.CancelledError:
            shim_task.cancel()
            if link is not None:
                link.close()
            raise
        finally:
            for t in timers:
                t.cancel()
            for h in pending:
                h.cancel()
            watch.forget(job.id)
        while self._take_output(job, spool):  # noqa: ASYNC110 - a turn for subscribers, not a wait
            await asyncio.sleep(0)
        status = None
        if link is not None:
            link.finish()  # the shim is gone: the rest of the pipe is there to read
            status = link.exit_status
        # The exit file too, if the frame is missing (the pipe failed, or no link).
        problem = ""
        if status is None:
            status, problem = await shimjob.read_exit_patiently(exit_file)
        # Queued after the adoption record, before the finished record (_record).
        self.job_disk.later(functools.partial(shimjob.remove_files, self.jobs_dir, job.id))
        if status is None:
            why = problem or "the job's shim ended without recording an exit status"
            job.settle(JobReason.KILLED, error=why)
            log.warning("job %s: no exit status: %s", job.id, why)
        else:
            if job.observer is not None:
                job.observer.exited(status.code, status.signal)
            self._finish_exited(job, status)

    def _overflow_frame(self, job: Job, spool: FollowedSpool, stream: int, data: bytes) -> None:
        """Output the shim sent down its link instead of the spool (past a cut; see ccxd-shim.c)."""
        if not spool.cut:
            # Everything the spool holds comes before the first frame.
            while self._take_output(job, spool):
                pass
            if not spool.cut:
                spool.cut = True
                job._notify()
        if not job.log.closed:
            self._append_output(job, stream, data)

    def _take_output(self, job: Job, spool: FollowedSpool) -> bool:
        """Take in up to about 1 MiB of new output; True if there may be more.

        More is taken on a later loop turn, so subscribers and the store writer
        run in between however far the daemon is behind its shims.
        """
        if job.log.closed:
            return False
        chunks = spool.take_new()
        for stream, length in chunks:
            self._append_output(job, stream, length)
        if spool.cut_seen and not spool.cut:
            spool.cut = True
            job._notify()
        return bool(chunks)

    def sweep_spools(self) -> int:
        """Delete the spools a previous run left that nothing can need any more; how many.

        A finished job's spool goes when the job is retired from memory, which a
        stopped or killed daemon never gets to.  After recovery, a spool is still
        needed only by a job this daemon has, a job whose record may not have
        reached the store (its job file is still there) or one a shim may still
        write to (its adoption record is still there).
        """
        try:
            spooled = spooled_jobs(self.spool_dir)
            needed = set(self.jobs)
            needed.update(info.id for info in jobfile.load_all(self.jobs_dir))
            needed.update(rec.info.id for rec in shimjob.load_records(self.jobs_dir))
        except OSError as exc:
            log.warning("cannot sweep the spool directory: %s", exc)
            return 0
        orphans = spooled - needed
        for job_id in orphans:
            remove_spool(self.spool_dir, job_id)
        return len(orphans)

    def adoptable(self, records: Iterable[shimjob.AdoptRecord]) -> list[shimjob.AdoptRecord]:
        """The records of jobs that can be adopted: the shim lives or the exit status is there.

        The files of the others are removed (the store's crash recovery records
        those jobs as lost).
        """
        found = []
        for rec in records:
            info = rec.info
            alive = shimjob.pid_alive(rec.shim_pid, rec.shim_start)
            there = os.path.exists(shimjob.exit_path(self.jobs_dir, info.id))
            if info.id in self.jobs or info.pid is None or not (alive or there):
                shimjob.remove_files(self.jobs_dir, info.id)
            else:
                found.append(rec)
        return found

    def adopt(
        self, records: Iterable[shimjob.AdoptRecord], stored: dict[str, int] | None = None
    ) -> list[Job]:
        """Take over jobs a previous daemon left running under their shims (see :meth:`adoptable`).

        ``stored[job_id]`` is how many chunks are already in the store; the job
        takes in (and records) the rest as new output.  Without it, every chunk
        the spool holds counts as stored.
        """
        adopted = []
        for rec in records:
            info = rec.info
            alive = shimjob.pid_alive(rec.shim_pid, rec.shim_start)
            try:
                job = self._adopted_job(rec, None if stored is None else stored.get(info.id, 0))
            except (OSError, RpcError) as exc:
                log.warning("job %s cannot be adopted: %s", info.id, exc)
                shimjob.remove_files(self.jobs_dir, info.id)
                continue
            self.jobs[job.id] = job
            self._running += 1
            job.queue_groups = self._groups_of(job)
            self.queue.started(job.queue_groups)
            self.gate.started(job)
            spool = job.log.spool
            assert isinstance(spool, FollowedSpool)
            gone = shimjob.wait_pid(rec.shim_pid, rec.shim_start)
            if job.observer is not None:
                # The output so far first, then silences count from the last of it (unless the
                # job ended while no daemon ran: its exit is read at once).
                adoption.replay(job)
                ended = os.path.exists(shimjob.exit_path(self.jobs_dir, job.id))
                job.observer.started(
                    functools.partial(self._stop, job), since=None if ended else job.last_output_mono
                )
            self._record(job)
            self._start_task(job, self._run(job, self._follow_shim(job, spool, rec.shim_pid, gone)))
            log.info(
                "job %s adopted: pid %d (shim %d%s), %d output bytes so far",
                job.id,
                info.pid,
                rec.shim_pid,
                "" if alive else ", gone",
                job.log.size,
            )
            adopted.append(job)
        return adopted

    def _adopted_job(self, rec: shimjob.AdoptRecord, stored: int | None) -> Job:
        """The job of ``rec``, made by the factory of new jobs and put back where it was."""
        info = rec.info
        assert info.pid is not None
        spool = FollowedSpool(self.spool_dir, info.id, self.config.spool_max_bytes, existing=True)
        out, last_output = adoption.resume_output(spool, stored, self.config.buffer_size, info.started_at)
        start, lost = adoption.made_from(rec)
        try:
            job = self._build_job(
                start.params, info.peer, info.id, list(info.argv), info.shell, info.cwd, out, info.limits
            )
        except BaseException:
            out.close()
            spool.close()
            raise
        job.argv = list(info.argv)  # what runs (with its --session-id), not what a kind would make anew
        now, mono = time.time(), time.monotonic()
        job.timeout, job.idle_timeout = info.timeout, info.idle_timeout
        job.timeout_basis, job.timeout_silence = info.timeout_basis, info.timeout_silence
        job.hooks, job.annotations = list(info.hooks), dict(info.annotations)
        job.worktree = info.worktree
        job.attempt, job.retry_of, job.retry_note = info.attempt, info.retry_of, info.retry_note
        job.retry_base, job.concision_level, job.lost_env = start.retry_base, start.concision_level, lost
        job.queued_at = info.queued_at
        job.started_at = info.started_at or now
        job.started_mono = mono - (now - job.started_at)
        job.last_output_mono = mono - max(0.0, now - last_output)
        job.pid, job.pgid = info.pid, info.pgid or info.pid
        job.tree = self.resources.adopt(job, job.pid, job.pgid, reaper=rec.shim_pid, cgroup=info.cgroup)
        job.tree.leader_start = rec.leader_start
        job.tree.reaper_start = rec.shim_start
        job.shim_pid = rec.shim_pid
        job.adopted = True
        job.move(JobState.STARTING)
        job.move(JobState.RUNNING)
        if shimjob.is_stopped(job.pid, rec.leader_start):
            job.move(JobState.PAUSED)  # paused (SIGSTOP) under the previous daemon
        return job

    # -- control --------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job."""
        job = self.get(job_id)
        if job.finished:
            raise RpcError(ErrorCode.JOB_NOT_ACTIVE, f"job {job_id} already finished ({job.reason})")
        if job.state is JobState.QUEUED:
            self._end_queued(job, JobReason.CANCELLED)
            self._next_from_queue()
        else:
            self._stop(job, JobReason.CANCELLED)
        return job

    async def _hooks_after_cancel(self, job: Job) -> None:
        await self._after_hooks(job)
        if job.hooks:
            self._resave(job)

    def _resave(self, job: Job) -> None:
        # A finished job's record again, with what its hooks added (durations are not counted twice).
        info = job.info()
        self._save_job_file(job, info)
        if self.recorder is not None:
            self.recorder.job_changed(info)

    def run_error_hooks(self, job: Job, event: str) -> None:
        """Run the error hooks of a finished job for ``event`` (``retry_exhausted``); then save it again."""
        if self.hooks is None:
            return
        hooks = self.hooks

        async def run() -> None:
            try:
                await hooks.error(job, event)
            except Exception:
                log.exception("job %s: error hooks failed", job.id)
            self._resave(job)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send_signal(self, job_id: str, sig: int) -> Job:
        """Send ``sig`` to every process of a running job."""
        job = self._need_processes(job_id)
        assert job.tree is not None
        job.tree.signal(sig)
        if sig == signal_mod.SIGSTOP and job.state is JobState.RUNNING:
            job.move(JobState.PAUSED)
            self._record(job)
        elif sig == signal_mod.SIGCONT and job.state is JobState.PAUSED:
            job.move(JobState.RUNNING)
            self._record(job)
        return job

    def pause(self, job_id: str) -> Job:
        """Stop (SIGSTOP) the whole job."""
        job = self._need_processes(job_id)
        if job.state is not JobState.PAUSED:
            self.send_signal(job_id, signal_mod.SIGSTOP)
        return job

    def resume(self, job_id: str) -> Job:
        """Continue (SIGCONT) a paused job."""
        job = self._need_processes(job_id)
        if job.state is JobState.PAUSED:
            self.send_signal(job_id, signal_mod.SIGCONT)
        return job

    def _need_processes(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state not in (JobState.RUNNING, JobState.PAUSED) or job.tree is None or job.reason is not None:
            raise RpcError(
                ErrorCode.JOB_NOT_ACTIVE,
                f"job {job_id} is {job.state}, not running",
                {"state": job.state.value},
            )
        return job

    # -- retention and shutdown -----------------------------------------------

    def _retire(self, job: Job) -> None:
        self._job_file_written.pop(job.id, None)  # a queued job that never ran
        self._finished[job.id] = None
        spool = job.log.spool
        if spool is not None and spool.created and self.recorder is not None:
            # Its writes are all submitted (``_record`` ran): once the store has this many, it has them.
            self._spooled[job.id] = (spool.size, self.recorder.writer.submitted)
            self._spooled_bytes += spool.size
        while len(self._finished) > self.config.finished_jobs_kept:
            old_id, _ = self._finished.popitem(last=False)
            self._forget(old_id)
        self._evict_spools()

    def _evict_spools(self) -> None:
        """Forget the oldest finished jobs, spools and all, past ``spool_max_total`` on disk.

        Only jobs whose output the store has: from then on it answers for them.
        """
        if self._spooled_bytes <= self.config.spool_max_total or self.recorder is None:
            return
        writer = self.recorder.writer
        for job_id, (_, mark) in list(self._spooled.items()):
            if self._spooled_bytes <= self.config.spool_max_total or not writer.has_stored(mark):
                break
            self._finished.pop(job_id, None)
            self._forget(job_id)

    def _forget(self, old_id: str) -> None:
        """Drop a finished job from memory and its spool and job file from disk."""
        size, _ = self._spooled.pop(old_id, (0, 0))
        self._spooled_bytes -= size
        old = self.jobs.pop(old_id, None)
        spool = old.log.spool if old is not None else None
        if spool is not None:
            spool.close()
        # Two queues: the job file may go before the spool, and a crash in between
        # leaves a spool nothing needs, which sweep_spools removes at the next start
        # (as it does the files of a shim that made one but failed to make the other).
        # A job that wrote nothing has no files: removing them cost a thread hand-off.
        if spool is not None and spool.created:
            self.disk.later(functools.partial(_remove_spool_files, spool))
        self.job_disk.later(functools.partial(jobfile.remove, self.jobs_dir, old_id))

    async def shutdown(self, mode: str, drain_timeout: float) -> None:
        """Stop accepting jobs; drain (up to ``drain_timeout``), cancel, or leave the rest.

        ``leave`` keeps jobs under a shim running for the next daemon to adopt;
        the others (queued, starting, or without a shim) are cancelled.
        """
        self._accepting = False
        for job in self.queue.items():
            if job.finished or self.gate.outlives_shutdown(job):
                continue  # stays queued in history; the next daemon queues it again
            self.cancel(job.id)
        left = self._left
        if mode == "leave":
            for job in list(self.active_jobs):
                task = self._job_tasks.get(job.id)
                if (
                    job.shim_pid is not None
                    and task is not None
                    and job.state in (JobState.RUNNING, JobState.PAUSED)
                    and job.stop_reason is None
                ):
                    task.cancel()  # stop following; the shim and the job run on
                    left.add(job.id)
            log.info("leaving %d running jobs for the next daemon to adopt", len(left))
        running = [t for t in self._tasks if t.get_name().startswith("job-")]
        if mode == "drain" and running:
            log.info("draining %d running jobs (up to %.1fs)", len(running), drain_timeout)
            await asyncio.wait(running, timeout=drain_timeout)
        for job in self.active_jobs:
            if job.id not in left:
                self._stop(job, JobReason.CANCELLED)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.kill_grace + 5)
        for job in self.jobs.values():
            if job.log.spool is not None:
                job.log.spool.close()
        if self._watch is not None:
            self._watch.close()
        if self._shims is not None:
            self._shims.close()
        if not (await self.disk.flush(timeout=30) and await self.job_disk.flush(timeout=30)):
            log.warning("job files still queued at exit; a later daemon recovers from what is on disk")


def _save_record(directory: Path, record: shimjob.AdoptRecord) -> None:
    try:
        shimjob.save_record(directory, record)
    except OSError as exc:
        log.warning("job %s: cannot save its adoption record (%s)", record.info.id, exc)


def _remove_spool_files(spool: Spool) -> None:
    """Delete a retired job's spool (the disk queue runs this)."""
    for path in (spool.data_path, spool.index_path):
        path.unlink(missing_ok=True)


def _succeeded(info: JobInfo) -> bool:
    """What ``after`` needs of a job: it ran and exited 0."""
    return info.reason is JobReason.EXITED and info.exit_code == 0


def _outcome(info: JobInfo) -> str:
    """How a job ended, in words: ``exited 1``, ``was cancelled``, ``killed by signal 9``."""
    if info.reason is JobReason.EXITED:
        return f"exited {info.exit_code}"
    if info.reason is JobReason.KILLED and info.signal is not None:
        return f"was killed by signal {info.signal}"
    return f"ended {info.reason}" + (f" ({info.error})" if info.error else "")


def _discard(job: Job) -> None:
    """Forget a job that was made but not admitted."""
    job.log.close()
    if job.log.spool is not None:
        job.log.spool.remove()


def _alias_shell(name: str) -> str:
    return "/bin/sh" if name == "default" else name


_MAX_ARG_STRLEN = 32 * 4096
"""Linux MAX_ARG_STRLEN (32 pages), the terminating NUL included."""


def _check_text(params: StartParams) -> None:
    """Refuse NUL bytes, which no exec can carry, with a precise message."""
    parts: list[tuple[str, str]] = []
    if isinstance(params.command, str):
        parts.append(("command", params.command))
    else:
        parts += [(f"command[{i}]", a) for i, a in enumerate(params.command or ())]
    if params.cwd is not None:
        parts.append(("cwd", params.cwd))
    if params.shell is not None:
        parts.append(("shell", params.shell))
    for k, v in params.env.items():
        if not k or "=" in k:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid environment name {k!r} at $.params.env")
        parts += [(f"env.{k}", k), (f"env.{k}", v)]
    for where, text in parts:
        if "\0" in text:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"NUL byte not allowed - at `$.params.{where}`")
    if params.cwd is not None and not os.path.isabs(params.cwd):
        raise RpcError(
            ErrorCode.INVALID_PARAMS, f"cwd must be an absolute path, got {params.cwd!r} - at `$.params.cwd`"
        )
    # The kernel refuses any single argument or environment entry longer than this (E2BIG);
    # say which one up front instead of failing at exec.
    if isinstance(params.command, str):
        sized = [("command", len(params.command.encode()) + 1)]
    else:
        sized = [(f"command[{i}]", len(a.encode()) + 1) for i, a in enumerate(params.command or ())]
    sized += [(f"env.{k}", len(k.encode()) + len(v.encode()) + 2) for k, v in params.env.items()]
    for where, size in sized:
        if size > _MAX_ARG_STRLEN:
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"{where} is {size - 1} bytes; the kernel limit for one argument or environment "
                f"entry is {_MAX_ARG_STRLEN - 1} - at `$.params.{where}`",
            )


def _short(argv: list[str]) -> str:
    text = " ".join(argv)
    return text if len(text) <= 120 else text[:117] + "..."
