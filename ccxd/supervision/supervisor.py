"""The supervisor: the registry of a daemon's jobs and the verbs on them.

It makes jobs (:meth:`Supervisor.make_job`), admits them (``admission.py``
decides when each starts), runs each through an engine (``engine.py``: pipes,
or a shim that outlives the daemon), takes back the jobs a previous daemon left
(``adoption.py``), keeps their files (``jobfiles.py``), and retires finished
jobs (``retention.py``).  Each step of a job is told through one seam,
``lifecycle.py`` (the recorder, the kinds' observers, the Claude gate and
retries subscribe); the user's hooks are the one awaited seam, which can refuse
or change a job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal as signal_mod
import time  # noqa: F401 - tests/supervision/test_job_id.py freezes the ids' clock through this module
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from ccxd.cgroups.control import ResourceControl
from ccxd.config import Config
from ccxd.errors import JobError, JobNotActive, RpcError, ShuttingDown, UnknownJob
from ccxd.jobs.job import Job
from ccxd.jobs.lifecycle import Lifecycle, LifecycleObserver
from ccxd.jobs.observer import KindObservers
from ccxd.output.follower import FollowedSpool
from ccxd.output.log import Chunk
from ccxd.proc.reaper import ExitStatus, Reaper
from ccxd.protocol import (
    HookOutcome,
    JobInfo,
    JobReason,
    JobState,
    ListParams,
    StartParams,
)
from ccxd.supervision import adoption, shimjob
from ccxd.supervision.admission import Admission, stored_ends
from ccxd.supervision.engine import Engine, job_env, settle_exited
from ccxd.supervision.factory import JobFactory
from ccxd.supervision.gate import JobGate
from ccxd.supervision.ids import new_job_id
from ccxd.supervision.jobfiles import JobFiles
from ccxd.supervision.pipe_engine import PipeEngine
from ccxd.supervision.queue import JobQueue
from ccxd.supervision.requests import parse_signal
from ccxd.supervision.retention import Retention
from ccxd.supervision.shim import find_shim
from ccxd.supervision.shim_engine import ShimEngine
from ccxd.worktree.manager import Worktrees

if TYPE_CHECKING:
    from ccxd.history.recorder import Recorder
    from ccxd.hooks.runner import HookRunner

__all__ = ["Supervisor", "new_job_id", "parse_signal"]

log = logging.getLogger("ccxd.supervision")


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
        self.jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._job_tasks: dict[str, asyncio.Task[None]] = {}
        self._accepting = True
        self._left_running: set[str] = set()
        self.fleet_epochs: dict[str, int] = recorder.fleet_epochs if recorder is not None else {}
        """Fleet jobs this node claimed → the epoch of the claim (the store fences their writes by it)."""
        """Jobs a ``leave`` shutdown left running for the next daemon: not finished here."""
        self.files = JobFiles(jobs_dir or spool_dir, spool_dir)
        """Job files, adoption records and spools, changed in order off the loop (jobfiles.py)."""
        self.resources = resources if resources is not None else ResourceControl(config)
        """Limits, cgroups, samples and admission thresholds (ccxd/cgroups/control.py)."""
        self.resources.on_over_limit = lambda job: self.stop(job, JobReason.OOM)
        # Jobs under a shim survive this daemon and are adopted by the next (shim_engine.py).
        self.shim_path = find_shim(config.shim_path) if config.job_shim else None
        if config.job_shim and self.shim_path is None:
            log.warning("no ccxd-shim: jobs end with the daemon (build: python -m ccxd.supervision.shim)")
        self.shim_engine = ShimEngine(self, self.files, self.shim_path)
        """Runs jobs under shims, and follows adopted ones even when new jobs use pipes."""
        self.engine: Engine = self.shim_engine if self.shim_path is not None else PipeEngine(self, spool_dir)
        self.retention = Retention(config, self.jobs, self.files, recorder)
        """Which finished jobs stay in memory (``finished_jobs_kept``, ``spool_max_total``)."""
        self.admission = Admission(config, self.resources, self.jobs, self._launch, self._end_queued)
        self.factory = JobFactory(config, self.resources, self.engine, self.jobs, recorder)
        """Makes jobs from requests (factory.py); adopted jobs too."""
        self.node = self.factory.node
        self.default_shell = self.factory.default_shell
        self.kinds = self.factory.kinds
        """Job kinds (Claude) that shape requests and watch their jobs' output."""
        self.lifecycle = Lifecycle()
        """Who hears each step of every job (lifecycle.py): the recorder first, then each job's observer."""
        if recorder is not None:
            self.lifecycle.subscribe(recorder)
        self.lifecycle.subscribe(KindObservers())
        self.worktrees = Worktrees(
            config.resolved_state_dir() / "worktrees",
            reaper,
            lambda: {j.cwd for j in self.jobs.values() if j.params.worktree and not j.finished},
        )
        """Jobs' git worktrees (``job.start`` ``worktree``; ccxd/worktree/)."""

    @property
    def gate(self) -> JobGate:
        """Decides when a queued job may start (the Claude limits plug in here)."""
        return self.admission.gate

    @gate.setter
    def gate(self, gate: JobGate) -> None:
        self.lifecycle.unsubscribe(self.admission.gate)
        self.admission.gate = gate
        if isinstance(gate, LifecycleObserver):  # it hears starts and ends (the Claude gate)
            self.lifecycle.subscribe(gate)

    @property
    def queue(self) -> JobQueue[Job]:
        """Queued jobs in start order (``group.*`` methods change its groups)."""
        return self.admission.queue

    def start_ready(self) -> None:
        """Start whatever queued jobs may start now (a wait ended, a group grew)."""
        self.admission.start_ready()

    # -- queries --------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job with this id; :class:`UnknownJob` if there is none."""
        job = self.jobs.get(job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    def list_jobs(self, params: ListParams) -> list[JobInfo]:
        """Jobs newest first, filtered."""
        out = []
        for job in reversed(self.jobs.values()):
            if params.state is not None and job.state != params.state:
                continue
            if params.session is not None and job.params.session != params.session:
                continue
            if params.node is not None and job.node != params.node:
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

    # -- making and admitting jobs --------------------------------------------

    def check(self, params: StartParams) -> StartParams:
        """``params`` as a job would run them, refused as :meth:`start` refuses them, no job made.

        A fleet node checks a request it queues fleet-wide (another node runs it).
        """
        if not self._accepting:
            raise ShuttingDown
        return self.factory.check(params)

    async def start(
        self,
        params: StartParams,
        peer: str = "",
        *,
        job_id: str | None = None,
        fleet_epoch: int | None = None,
        fleet_origin: tuple[float, str | None, int] | None = None,
    ) -> Job:
        """Admit a job: start it now or queue it.  Raises :class:`JobError` (or a hook's refusal).

        ``job_id`` and ``fleet_epoch``: a fleet job this node claimed, under the id it
        was submitted with; its store writes are fenced by the epoch of the claim.
        ``fleet_origin``: its submission time, the job it runs again (lost with its
        node) and its attempt, in its first record.
        """
        if not self._accepting:
            raise ShuttingDown
        params = self.factory.prepare(params)
        ends = await stored_ends(params, self.jobs, self.recorder, self.config.store_timeout)
        job_id = job_id or new_job_id()
        if fleet_epoch is not None:
            self.fleet_epochs[job_id] = fleet_epoch
        outcomes: list[HookOutcome] = []
        notes: dict[str, object] = {}
        if self.hooks is not None:  # may change the params, or refuse (HOOK_REFUSED)
            params, outcomes, notes = await self.hooks.pre(params, job_id, peer)
        group = self.config.groups.get(params.group or "")
        worktree = None
        if params.worktree or (group is not None and group.worktree):  # a git worktree of its own
            worktree, cwd = await self.worktrees.create(params.cwd or self.factory.home, job_id)
            params = msgspec.structs.replace(params, cwd=cwd, worktree=True)
        timeout, basis, silence = await self.factory.timeout_for(params)
        try:
            job = self.factory.make(params, peer, job_id)
        except JobError:
            self.fleet_epochs.pop(job_id, None)
            raise
        job.worktree = worktree
        job.timeout, job.timeout_basis, job.timeout_silence = timeout, basis, silence
        job.hooks, job.annotations = outcomes, notes
        job.stored_ends = ends
        if fleet_origin is not None:
            job.queued_at, job.retry_of, job.attempt = fleet_origin
        self.admit(job)
        written = self.files.admission(job.id)
        if written is not None:
            # The reply tells a client the job exists: it must, even if ccxd is killed
            # right after.  Only this request waits (in the I/O thread); the loop goes on.
            await asyncio.shield(written)
        return job

    def admit(self, job: Job) -> None:
        """Start a job made by :meth:`make_job` now, or queue it.  Raises :class:`JobError`."""
        admission = self.admission
        try:
            if not self._accepting:
                raise ShuttingDown
            after, after_any, failed = admission.dependencies(job)
            job.queue_groups = admission.groups_of(job)
            if failed is None and not admission.may_start_now(job, bool(after or after_any)):
                admission.enqueue(job, after, after_any)
        except JobError:
            _discard(job)
            raise
        self.jobs[job.id] = job
        self.files.save_admitted(job.info())
        if failed is not None:  # a job it needed to succeed has not: it ends at once
            self._end_queued(job, JobReason.DEPENDENCY_FAILED, failed)
        elif job.id in admission.queued:
            self._record(job)
        else:
            admission.launched(job, join_groups=True)
            self._launch(job)

    def make_job(self, params: StartParams, peer: str = "", job_id: str | None = None) -> Job:
        """A job for ``params`` (not admitted yet); ``job_id`` reuses an id (a restored job)."""
        return self.factory.make(params, peer, job_id, reused=job_id is not None)

    def _end_queued(self, job: Job, reason: JobReason, error: str | None = None) -> None:
        """End a job that never ran (cancelled, or a dependency failed); its error hooks follow."""
        self.admission.remove(job)
        job.finish(reason, error=error)
        self.lifecycle.ended(job)
        self._record(job)
        self.retention.retire(job)
        self.admission.dependency_ended(job)
        if self.hooks is not None:
            # A queued job finishes at once; its error hooks follow and update the record.
            self.background(self._hooks_after_cancel(job))

    # -- running --------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        self.lifecycle.started(job)
        job.move(JobState.STARTING)
        self._start_task(job, self._run(job, self._spawn(job)))

    def _start_task(self, job: Job, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"job-{job.id}")
        self._tasks.add(task)
        self._job_tasks[job.id] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: self._job_tasks.pop(job.id, None))

    async def _run(self, job: Job, run: Coroutine[object, object, None]) -> None:
        """Run a job to its end (``run``: its engine's part), then finish, record and retire it."""
        try:
            await run
        except Exception:  # a bug must not leave a job "running" forever
            log.exception("job %s: supervisor error", job.id)
            if not job.finished:
                if job.tree is not None:
                    await job.tree.kill()
                job.settle(JobReason.KILLED, error="internal supervisor error")
        finally:
            left = job.id in self._left_running
            if not job.finished and not left:
                if job.worktree is not None:  # what it changed, in its final record
                    job.worktree = await self.worktrees.finish(job.id, job.worktree)
                await self._after_hooks(job)
                job.move(JobState.FINISHED)
            self.admission.run_ended(job, left=left)
            # A job left running (shutdown "leave") keeps its group and is recorded as it is.
            if job.finished:
                self.lifecycle.ended(job)
                self.resources.release(job)
            self._record(job)
            if job.finished:
                self.retention.retire(job)
                self.admission.dependency_ended(job)
            self.admission.start_ready()

    async def _spawn(self, job: Job) -> None:
        written = self.files.take_admission(job.id)
        if written is not None:
            await written  # no process before its job file
        if job.stop_reason is not None:
            job.settle(job.stop_reason)
            return
        stdin = job.params.input.encode() if job.params.input is not None else None
        await self.engine.run(job, job_env(self.factory.base_env, job), stdin)

    # The engines' host (engine.EngineHost): what they report, what they ask for.

    def take_output(self, job: Job, stream: int, data: bytes | int) -> Chunk:
        """The one place a job's output enters its log (and the store).

        ``data`` is the bytes, or the length of a chunk that is in the job's
        spool already (the shim wrote it): its bytes are read only when needed.
        """
        out = job.log
        chunk = out.append(stream, data) if isinstance(data, bytes) else out.append_spooled(stream, data)
        self.lifecycle.output(job, chunk)
        return chunk

    def job_running(self, job: Job) -> None:
        """The engine started the job's process: record it, then its observers watch it."""
        job.move(JobState.RUNNING)
        self._record(job)
        self.lifecycle.running(job, functools.partial(self.stop, job))

    def job_exited(self, job: Job, status: ExitStatus) -> None:
        """The job's process is gone and its output read: its observers hear it, then it is settled."""
        self.lifecycle.exited(job, status)
        settle_exited(job, status, self.resources)

    def stop(self, job: Job, reason: JobReason, note: str | None = None) -> None:
        """Begin stopping ``job`` for ``reason`` (first reason wins); ``note`` goes to its record's error."""
        if job.finished or job.stop_reason is not None:
            return
        job.stop_reason, job.stop_note = reason, note
        log.info("job %s: stopping (%s%s)", job.id, reason, f": {note}" if note else "")
        self.terminate(job)

    def terminate(self, job: Job) -> None:
        """Send the job's processes the stop sequence (TERM, then KILL after ``kill_grace``)."""
        if job.tree is not None:
            self.background(job.tree.terminate(self.config.kill_grace))

    def background(self, coro: Coroutine[object, object, None]) -> None:
        """Run ``coro`` as a task that shutdown waits for."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- adoption ---------------------------------------------------------------

    def adoptable(self, records: Iterable[shimjob.AdoptRecord]) -> list[shimjob.AdoptRecord]:
        """The records of jobs that can be adopted (:func:`adoption.adoptable`); the others' files go."""
        return adoption.adoptable(records, self.files, self.jobs)

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
            spool = FollowedSpool(self.files.spool_dir, info.id, self.config.spool_max_bytes, existing=True)
            try:
                job = adoption.rebuild(
                    rec,
                    None if stored is None else stored.get(info.id, 0),
                    spool,
                    self.config.buffer_size,
                    self.factory.build,
                    self.resources,
                )
            except (OSError, JobError, RpcError) as exc:
                log.warning("job %s cannot be adopted: %s", info.id, exc)
                self.files.remove_shim_files(info.id)
                continue
            self.jobs[job.id] = job
            job.queue_groups = self.admission.groups_of(job)
            self.admission.launched(job, join_groups=True)
            self.lifecycle.started(job)
            gone = shimjob.wait_pid(rec.shim_pid, rec.shim_start)
            # Its observer gets the output so far first, then silences count from the last of
            # it (unless the job ended while no daemon ran: its exit is read at once).
            adoption.replay(job)
            ended = os.path.exists(self.files.exit_path(job.id))
            since = None if ended else job.last_output_mono
            self.lifecycle.running(job, functools.partial(self.stop, job), since)
            self._record(job)
            self._start_task(job, self._run(job, self.shim_engine.follow(job, spool, rec.shim_pid, gone)))
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

    def sweep_spools(self) -> int:
        """Delete the spools a previous run left that nothing can need any more; how many.

        A finished job's spool goes when the job is retired from memory, which a
        stopped or killed daemon never gets to (:meth:`JobFiles.sweep_spools`).
        """
        return self.files.sweep_spools(set(self.jobs))

    # -- control --------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job."""
        job = self.get(job_id)
        if job.finished:
            raise JobNotActive(f"job {job_id} already finished ({job.reason})")
        if job.state is JobState.QUEUED:
            self._end_queued(job, JobReason.CANCELLED)
            self.admission.start_ready()
        else:
            self.stop(job, JobReason.CANCELLED)
        return job

    def kill_lost(self, job_ids: Iterable[str]) -> list[Job]:
        """Kill at once (whole tree, no grace) the fleet jobs of this node that the fleet declared lost.

        Another node may run them again already: their claims are fenced, so
        what this node still writes of them is refused by the store.
        """
        killed = []
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job is None or job.finished:
                continue
            if job.state is JobState.QUEUED:
                self._end_queued(job, JobReason.LOST, "its node was declared lost")
            elif job.stop_reason is None:
                job.stop_reason, job.stop_note = JobReason.LOST, "its node was declared lost"
                if job.tree is not None:
                    self.background(job.tree.kill())
            killed.append(job)
        return killed

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
            raise JobNotActive(f"job {job_id} is {job.state}, not running", job.state.value)
        return job

    # -- hooks and records ----------------------------------------------------

    async def _after_hooks(self, job: Job) -> None:
        """Post and error hooks; they are bounded by their timeouts and never raise."""
        if self.hooks is None:
            return
        try:
            await self.hooks.finished(job)
        except Exception:
            log.exception("job %s: hooks failed", job.id)

    async def _hooks_after_cancel(self, job: Job) -> None:
        await self._after_hooks(job)
        if job.hooks:
            self._record_again(job)

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
            self._record_again(job)

        self.background(run())

    def _record(self, job: Job) -> None:
        """Tell the observers the job's record; a finished job's file gets its outcome.

        The job file too: the store is written behind, and a daemon killed before
        it has the outcome must not lose it.
        """
        info = job.info()
        if job.finished:
            self.files.save(info)
        self.lifecycle.recorded(job, info, outcome=job.finished)

    def _record_again(self, job: Job) -> None:
        # A finished job's record again, with what its hooks added (durations are not counted twice).
        info = job.info()
        self.files.save(info)
        self.lifecycle.recorded(job, info, outcome=False)

    # -- shutdown ---------------------------------------------------------------

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
        left = self._left_running
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
                self.stop(job, JobReason.CANCELLED)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.kill_grace + 5)
        for job in self.jobs.values():
            if job.log.spool is not None:
                job.log.spool.close()
        self.shim_engine.close()
        if self.engine is not self.shim_engine:
            self.engine.close()
        if not await self.files.flush(timeout=30):
            log.warning("job files still queued at exit; a later daemon recovers from what is on disk")


def _discard(job: Job) -> None:
    """Forget a job that was made but not admitted."""
    job.log.close()
    if job.log.spool is not None:
        job.log.spool.remove()
