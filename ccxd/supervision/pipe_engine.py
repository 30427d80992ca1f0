"""The pipe engine: a job is the daemon's child and its output comes through pipes.

Used where no shim is built or ``job_shim`` is off; such jobs end with the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from ccxd.output.chunker import Utf8Chunker
from ccxd.output.spool import FLUSH_INTERVAL, Spool
from ccxd.proc.spawn import SpawnError, spawn, write_input
from ccxd.protocol import JobReason
from ccxd.redact import redact_text
from ccxd.supervision.engine import PIPE_LINGER, EngineHost, arm_timers, short

if TYPE_CHECKING:
    from pathlib import Path

    from ccxd.jobs.job import Job

__all__ = ["PipeEngine"]

log = logging.getLogger("ccxd.supervision")


class PipeEngine:
    """Spawns jobs as children and reads their stdout and stderr."""

    def __init__(self, host: EngineHost, spool_dir: Path) -> None:
        self.host = host
        self.spool_dir = spool_dir

    def new_spool(self, job_id: str, max_bytes: int) -> Spool:
        """A spool the daemon writes (its file is made when the job first writes)."""
        return Spool(self.spool_dir, job_id, max_bytes)

    async def run(self, job: Job, env: dict[str, str], stdin: bytes | None) -> None:
        """Spawn the job, read its pipes until it and its tree are gone, and settle it."""
        host = self.host
        try:
            argv = host.resources.prepare(job, job.argv, env)
            proc = spawn(argv, job.cwd, env, with_input=stdin is not None)
        except SpawnError as exc:
            log.info("job %s failed to start: %s", job.id, redact_text(str(exc), job.secrets()))
            job.settle(JobReason.FAILED_TO_START, error=str(exc))
            return
        exited = host.reaper.watch(proc.pid)
        job.pid, job.pgid = proc.pid, proc.pgid
        job.tree = host.resources.started(job, proc.pid, proc.pgid)
        host.resources.stretch(job)
        job.started_at = time.time()
        job.started_mono = job.last_output_mono = time.monotonic()
        host.job_running(job)
        log.debug("job %s started: pid %d %s", job.id, proc.pid, short(job.shown_argv()))
        if stdin is not None and proc.stdin is not None:
            host.background(write_input(proc.stdin, stdin))

        loop = asyncio.get_running_loop()
        eof = [loop.create_future(), loop.create_future()]
        for stream, fd in enumerate((proc.stdout, proc.stderr)):
            self._read_pipe(job, stream, fd, eof[stream])
        timers = arm_timers(host, job)
        try:
            status = await exited
            # The leader is gone; anything it left behind goes too.
            if not job.tree.nothing_left(host.reaper.watching) and job.tree.members():
                await job.tree.terminate(host.config.kill_grace)
            _, pending = await asyncio.wait(eof, timeout=PIPE_LINGER)
            for fut in pending:
                fut.cancel()  # a process we could not find still holds the pipe
        finally:
            for t in timers:
                t.cancel()
        host.job_exited(job, status)

    def close(self) -> None:
        """Nothing is held between jobs."""

    def _read_pipe(self, job: Job, stream: int, fd: int, eof: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        size = self.host.config.chunk_size
        chunker = Utf8Chunker(size)
        spool = job.log.spool
        flush_timer: list[asyncio.TimerHandle] = []
        take_output = self.host.take_output

        def flush() -> None:
            flush_timer.clear()
            if spool is not None and not spool.cut:
                spool.flush()

        def append(piece: bytes) -> None:
            take_output(job, stream, piece)
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
