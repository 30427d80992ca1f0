"""How a job's process is run: the :class:`Engine` seam and what both engines share.

Two engines run jobs: the pipe engine (``pipe_engine.py``) spawns the job as a
child of the daemon and reads its output from pipes; the shim engine
(``shim_engine.py``) starts it under ``ccxd-shim``, which writes the output to
the job's spool, so the job outlives the daemon and the next one adopts it.
The supervisor picks one when it starts (``job_shim`` and a built shim) and
asks it for each job's spool and run; an engine reports back through its
:class:`EngineHost`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Protocol

from ccxd.config import Config
from ccxd.output.log import Chunk
from ccxd.output.spool import Spool
from ccxd.proc.reaper import ExitStatus, Reaper
from ccxd.protocol import JobReason
from ccxd.supervision.deadline import LimitTimer, guard_note

if TYPE_CHECKING:
    from ccxd.cgroups.control import ResourceControl
    from ccxd.jobs.job import Job

__all__ = ["PIPE_LINGER", "Engine", "EngineHost", "arm_timers", "job_env", "settle_exited", "short"]

log = logging.getLogger("ccxd.supervision")

PIPE_LINGER = 2.0
"""After the leader exits and the tree is gone, how long to wait for pipes to close."""

# Environment every job gets: unbuffered Python output, and Node never waiting on a TTY.
_JOB_ENV_DEFAULTS = {"PYTHONUNBUFFERED": "1", "NODE_NO_READLINE": "1"}


class EngineHost(Protocol):
    """What an engine needs of the supervisor whose jobs it runs."""

    config: Config
    reaper: Reaper
    resources: ResourceControl

    def take_output(self, job: Job, stream: int, data: bytes | int) -> Chunk:
        """Put output into the job's log (``data``: bytes, or a chunk's length already in its spool)."""

    def job_running(self, job: Job) -> None:
        """The job's process runs (pid, tree and start time are set)."""

    def job_exited(self, job: Job, status: ExitStatus) -> None:
        """The job's process is gone and its output read: settle its outcome."""

    def stop(self, job: Job, reason: JobReason, note: str | None = None) -> None:
        """Begin stopping the job for ``reason`` (first reason wins)."""

    def terminate(self, job: Job) -> None:
        """Send the job's processes the stop sequence now (its stop reason is set already)."""

    def background(self, coro: Coroutine[object, object, None]) -> None:
        """Run ``coro`` as a task the supervisor waits for at shutdown."""


class Engine(Protocol):
    """Runs jobs' processes."""

    def new_spool(self, job_id: str, max_bytes: int) -> Spool:
        """The spool a new job's output goes to (no file is made until it writes)."""

    async def run(self, job: Job, env: dict[str, str], stdin: bytes | None) -> None:
        """Start the job's process and follow it until it is gone; the job is settled then.

        A job that cannot start is settled ``failed_to_start``; nothing is raised for that.
        """

    def close(self) -> None:
        """Let go of what the engine holds (servers, watches) at shutdown."""


def job_env(base: dict[str, str], job: Job) -> dict[str, str]:
    """The environment of the job's process: the daemon's, the defaults, the request's, its kind's."""
    env = dict(base)
    env.update(_JOB_ENV_DEFAULTS)
    env.update(job.params.env)
    env.update(job.extra_env)
    env["CCXD_JOB_ID"] = job.id
    return env


def arm_timers(host: EngineHost, job: Job) -> list[LimitTimer]:
    """The job's timeout and idle timeout (deadline.py), counted from its start."""
    loop = asyncio.get_running_loop()
    timers: list[LimitTimer] = []
    if job.timeout is not None:
        after, silence = job.timeout, job.timeout_silence

        def timed_out(elapsed: float, quiet: float) -> None:
            note = None if silence is None else guard_note(after, silence, elapsed, quiet)
            host.stop(job, JobReason.TIMEOUT, note)

        timers.append(LimitTimer(loop, job, after, silence, timed_out, spare_paused=True))
    if job.idle_timeout is not None:
        idle = functools.partial(host.stop, job, JobReason.IDLE_TIMEOUT)
        timers.append(LimitTimer(loop, job, 0.0, job.idle_timeout, lambda _e, _q: idle()))
    return timers


def settle_exited(job: Job, status: ExitStatus, resources: ResourceControl) -> None:
    """Settle a job whose process exited: why it ended (ours to say if we stopped it), and log it."""
    if job.stop_reason is not None:
        reason = job.stop_reason
    elif status.signal is not None:
        reason = JobReason.KILLED
    else:
        reason = JobReason.EXITED
    reason, error = resources.verdict(job, reason)
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
        short(job.shown_argv()),
    )


def short(argv: list[str]) -> str:
    """A command line cut for a log line."""
    text = " ".join(argv)
    return text if len(text) <= 120 else text[:117] + "..."
