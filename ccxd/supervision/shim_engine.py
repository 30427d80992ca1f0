"""The shim engine: a job runs under ``ccxd-shim``, which outlives the daemon.

The shim writes the job's output to its spool and its exit status to an exit
file (and down its link to the daemon that started it); the daemon follows the
spool through one inotify watch (``spoolwatch.py``).  A daemon killed while such
a job runs leaves an adoption record; the next daemon follows the same spool
(:meth:`ShimEngine.follow`, from ``adoption.py``).  Shims are forked by a shim
server (``shimserver.py``) so the loop never forks a large process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal as signal_mod
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import msgspec

from ccxd.output.follower import FollowedSpool
from ccxd.proc.spawn import SpawnError
from ccxd.protocol import JobReason, JobState
from ccxd.redact import redact_text
from ccxd.supervision import adoption, shimjob
from ccxd.supervision.engine import PIPE_LINGER, EngineHost, arm_timers, short
from ccxd.supervision.jobfiles import JobFiles
from ccxd.supervision.shimserver import ShimServer
from ccxd.supervision.spoolwatch import SpoolWatch

if TYPE_CHECKING:
    from ccxd.jobs.job import Job

__all__ = ["ShimEngine"]

log = logging.getLogger("ccxd.supervision")


class ShimEngine:
    """Starts jobs under their shims and follows their spools (its own jobs and adopted ones)."""

    def __init__(self, host: EngineHost, files: JobFiles, shim_path: str | None) -> None:
        self.host = host
        self.files = files
        self.shim_path = shim_path
        """The ``ccxd-shim`` binary (None: this engine only follows adopted jobs)."""
        self._server: ShimServer | None = None
        """Forks job shims without blocking the loop; started with the first job."""
        self._watch: SpoolWatch | None = None

    def new_spool(self, job_id: str, max_bytes: int) -> FollowedSpool:
        """A spool the shim writes (it creates the file when the job first writes)."""
        return FollowedSpool(self.files.spool_dir, job_id, max_bytes)

    def close(self) -> None:
        """Stop watching spools and end the shim server (jobs and their shims run on)."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._server is not None:
            self._server.close()
            self._server = None

    def _shim_server(self, shim: str) -> ShimServer | None:
        if self._server is None and self.host.config.shim_server:
            self._server = ShimServer(shim, self.host.reaper)
        return self._server

    def _spool_watch(self) -> SpoolWatch:
        if self._watch is None:
            self._watch = SpoolWatch(asyncio.get_running_loop(), self.files.spool_dir, self.files.jobs_dir)
        return self._watch

    async def run(self, job: Job, env: dict[str, str], stdin: bytes | None) -> None:
        """Start the job under a shim, save its adoption record, and follow it until the shim is gone."""
        host, shim, spool = self.host, self.shim_path, job.log.spool
        assert shim is not None
        assert isinstance(spool, FollowedSpool)
        exit_file = self.files.exit_path(job.id)
        if job.reused_id:  # a restored job must not see its earlier run's status or output
            for path in (exit_file, spool.index_path, spool.data_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        try:
            join_files = host.resources.prepare_group(job)
            started = await shimjob.start_shim(
                self._shim_server(shim),
                shim,
                job.argv,
                job.cwd,
                env,
                spool,
                exit_file,
                host.config.chunk_size,
                stdin,
                join_files,
            )
        except SpawnError as exc:
            _failed_to_start(job, exc)
            return
        shim_exited = started.exited if started.exited is not None else host.reaper.watch(started.pid)
        shim_start = started.start if started.start is not None else shimjob.start_time(started.pid)
        try:
            pid = await shimjob.read_report(started, job.argv, job.cwd)
        except SpawnError as exc:
            await shim_exited  # the shim exits after its error report
            started.link.close()
            _failed_to_start(job, exc)
            return
        job.pid = job.pgid = pid
        job.tree = host.resources.started(job, pid, pid, reaper=started.pid, reaper_start=shim_start)
        started.link.on_gone(job.tree.forget_reaper)
        host.resources.stretch(job)
        job.shim_pid = started.pid
        job.started_at = time.time()
        job.started_mono = job.last_output_mono = time.monotonic()
        # The adoption record is on disk before anyone hears that the job runs: a
        # daemon killed after job.started leaves a job the next one adopts.
        info = msgspec.structs.replace(job.info(), state=JobState.RUNNING)
        record = shimjob.AdoptRecord(
            info, started.pid, shim_start, job.tree.leader_start, adoption.start_of(job)
        )
        await self.files.save_adoption_record(record)
        host.job_running(job)
        log.debug("job %s started: pid %d (shim %d) %s", job.id, pid, started.pid, short(job.shown_argv()))
        if job.stop_reason is not None:
            host.terminate(job)  # cancelled while the shim was starting it
        await self.follow(job, spool, started.pid, shim_exited, started.link)

    async def follow(
        self,
        job: Job,
        spool: FollowedSpool,
        shim_pid: int,
        shim_gone: Awaitable[object],
        link: shimjob.ShimLink | None = None,
    ) -> None:
        """Take in the job's output as its shim writes it, until the shim is gone; then settle the job.

        ``link`` is the pipe on which the shim sends what the spool could not take
        (past ``spool_max_bytes``, a full disk) and the exit status; only the
        daemon that started the shim has it.  Without it (an adopted job) the exit
        status comes from the exit file.
        """
        host = self.host
        loop = asyncio.get_running_loop()
        exit_file = self.files.exit_path(job.id)
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
        timers = arm_timers(host, job)
        try:
            if not (leader_exited.done() or shim_task.done()):
                first: list[asyncio.Future[Any]] = [leader_exited, shim_task]
                await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            assert job.tree is not None
            # The leader is gone; anything it left behind goes too.  Once the shim is
            # reaped its orphans are ours, so nothing_left() can spare the /proc scan
            # that members() falls back to without a live shim.
            if not (shim_task.done() and job.tree.nothing_left(host.reaper.watching)) and job.tree.members():
                await job.tree.terminate(host.config.kill_grace)
            # The shim ends once the pipes close; a process outside the job may hold them.
            for sig in (signal_mod.SIGTERM, signal_mod.SIGKILL):
                if shim_task.done():
                    break
                done, _ = await asyncio.wait([shim_task], timeout=PIPE_LINGER)
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
        # Queued after the adoption record, before the finished record.
        self.files.remove_shim_files_later(job.id)
        if status is None:
            why = problem or "the job's shim ended without recording an exit status"
            job.settle(JobReason.KILLED, error=why)
            log.warning("job %s: no exit status: %s", job.id, why)
        else:
            host.job_exited(job, status)

    def _overflow_frame(self, job: Job, spool: FollowedSpool, stream: int, data: bytes) -> None:
        """Output the shim sent down its link instead of the spool (past a cut; see ccxd-shim.c)."""
        if not spool.cut:
            # Everything the spool holds comes before the first frame.
            while self._take_output(job, spool):
                pass
            if not spool.cut:
                spool.cut = True
                job.notify()
        if not job.log.closed:
            self.host.take_output(job, stream, data)

    def _take_output(self, job: Job, spool: FollowedSpool) -> bool:
        """Take in up to about 1 MiB of new output; True if there may be more.

        More is taken on a later loop turn, so subscribers and the store writer
        run in between however far the daemon is behind its shims.
        """
        if job.log.closed:
            return False
        chunks = spool.take_new()
        for stream, length in chunks:
            self.host.take_output(job, stream, length)
        if spool.cut_seen and not spool.cut:
            spool.cut = True
            job.notify()
        return bool(chunks)


def _failed_to_start(job: Job, exc: SpawnError) -> None:
    log.info("job %s failed to start: %s", job.id, redact_text(str(exc), job.secrets()))
    job.settle(JobReason.FAILED_TO_START, error=str(exc))
