"""What adopting a job needs besides the supervisor: its record, its secrets, its earlier output.

A daemon killed while jobs run under their shims leaves an adoption record per
job (``shimjob.AdoptRecord``); the next daemon rebuilds each job through the
same factory as a new one (``Supervisor.build_job``: its kind's monitor,
limits, hooks) from the :class:`~ccxd.supervision.shimjob.JobStart` in the
record (:func:`rebuild`), then puts back what the record cannot give the factory:

* secret values (names :func:`~ccxd.redact.is_secret_name` matches) are never
  written to a file: :func:`start_of` leaves them out and :func:`made_from`
  reads them back from the job leader's environment (``/proc/PID/environ``,
  readable by the same user while the leader runs);
* the output written before the adoption is replayed to the job's observer
  (:func:`replay`): a Claude job's monitor learns the events so far, so it
  classifies the whole run;
* when the job last wrote (:func:`resume_output`: the spool index's
  modification time): stall and idle timers count from there, not from the
  adoption.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Container, Iterable
from typing import TYPE_CHECKING

from msgspec import structs

from ccxd.output.follower import FollowedSpool
from ccxd.output.log import Chunk, OutputLog
from ccxd.protocol import JobInfo, JobState, Limits, StartParams
from ccxd.redact import is_secret_name, redact_env
from ccxd.supervision import shimjob

if TYPE_CHECKING:
    from ccxd.cgroups.control import ResourceControl
    from ccxd.jobs.job import Job
    from ccxd.supervision.jobfiles import JobFiles

__all__ = [
    "JobFactory",
    "adoptable",
    "made_from",
    "read_environ",
    "rebuild",
    "replay",
    "resume_output",
    "start_of",
]

JobFactory = Callable[
    [StartParams, str, str, list[str], "str | None", str, OutputLog, "Limits | None"], "Job"
]
"""The supervisor's factory of jobs: params, peer, id, argv, shell, cwd, output log, limits."""

log = logging.getLogger("ccxd.supervision")


def start_of(job: Job) -> shimjob.JobStart:
    """What ``job`` was made from, to keep in its adoption record (secret values left out)."""
    params, base = job.params, job.retry_base
    secret = {k for k in params.env if is_secret_name(k)}
    if base is not None:
        secret.update(k for k in base.env if is_secret_name(k))
    kept = _redacted(params)
    if base is None and job.kind_state is None:
        # Nothing will run this request again (only jobs a kind watches are retried):
        # its command line is kept as shown, secrets and all redacted (redact.py).
        shown = job.info()
        kept = structs.replace(kept, command=shown.command, env=shown.env)
    return shimjob.JobStart(
        params=kept,
        retry_base=_redacted(base) if base is not None else None,
        concision_level=job.concision_level,
        secret_env=sorted(secret),
    )


def made_from(rec: shimjob.AdoptRecord) -> tuple[shimjob.JobStart, list[str]]:
    """What the job of ``rec`` was made from, secrets read back; the secret names that could not be.

    A record without ``start`` (or with one that does not decode) has only the
    job's record: the request is rebuilt from that (and its secrets are lost).
    """
    info = rec.info
    start = rec.start if rec.start is not None else shimjob.JobStart(params=_params_of(info))
    secret = start.secret_env if rec.start is not None else [k for k in info.env if is_secret_name(k)]
    if not secret:
        return start, []
    assert info.pid is not None
    environ = read_environ(info.pid, rec.leader_start) or {}
    wanted = set(secret)

    def fill(params: StartParams) -> StartParams:
        env = {k: environ.get(k, v) if k in wanted else v for k, v in params.env.items()}
        return structs.replace(params, env=env)

    lost = [k for k in secret if k in start.params.env and k not in environ]
    if lost:
        log.warning("job %s: %s not readable from the job's environment", info.id, ", ".join(lost))
    base = fill(start.retry_base) if start.retry_base is not None else None
    return structs.replace(start, params=fill(start.params), retry_base=base), lost


def read_environ(pid: int, start: int) -> dict[str, str] | None:
    """The environment ``pid`` was started with, while it is the process that started at ``start``."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not shimjob.pid_alive(pid, start):  # looked at after the read: a reused pid is not believed
        return None
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep:
            env[os.fsdecode(name)] = os.fsdecode(value)
    return env


def resume_output(
    spool: FollowedSpool, stored: int | None, memory_limit: int, started_at: float | None
) -> tuple[OutputLog, float]:
    """The job's output log, taking up after what its spool holds; when it last wrote (epoch seconds).

    ``stored`` is how many chunks the store has (None: all of them).  Raises
    OSError (the spool is closed then).
    """
    try:
        records, stream_bytes = spool.skip_existing(stored)
        try:
            last = os.stat(spool.index_path).st_mtime
        except FileNotFoundError:  # no output yet: quiet since it started
            last = started_at or time.time()
    except OSError:
        spool.close()
        raise
    out = OutputLog(memory_limit, spool)
    out.resume_at(records, spool.size, stream_bytes)
    return out, last


def replay(job: Job) -> None:
    """Give the job's observer the output written before it was adopted, in order."""
    observer, spool = job.observer, job.log.spool
    if observer is None or spool is None:
        return
    for seq in range(job.log.next_seq):
        try:
            got = spool.read(seq)
        except OSError as exc:
            log.warning("job %s: cannot read its output before the adoption: %s", job.id, exc)
            return
        if got is None:
            return
        (offset, _, stream), data = got
        observer.output(stream, Chunk(seq, stream, offset, data))


def _redacted(params: StartParams) -> StartParams:
    if not any(is_secret_name(k) for k in params.env):
        return params
    return structs.replace(params, env=redact_env(params.env))


def _params_of(info: JobInfo) -> StartParams:
    return StartParams(
        command=info.command,
        cwd=info.cwd,
        env=info.env,
        shell=info.shell,
        timeout=info.timeout,
        idle_timeout=info.idle_timeout,
        session=info.session,
        tags=info.tags,
    )


def adoptable(
    records: Iterable[shimjob.AdoptRecord], files: JobFiles, known: Container[str]
) -> list[shimjob.AdoptRecord]:
    """The records of jobs that can be adopted: the shim lives or the exit status is there.

    The files of the others (and of jobs in ``known``, which this daemon has) are
    removed; the store's crash recovery records those jobs as lost.
    """
    found = []
    for rec in records:
        info = rec.info
        alive = shimjob.pid_alive(rec.shim_pid, rec.shim_start)
        there = os.path.exists(files.exit_path(info.id))
        if info.id in known or info.pid is None or not (alive or there):
            files.remove_shim_files(info.id)
        else:
            found.append(rec)
    return found


def rebuild(
    rec: shimjob.AdoptRecord,
    stored: int | None,
    spool: FollowedSpool,
    buffer_size: int,
    build: JobFactory,
    resources: ResourceControl,
) -> Job:
    """The job of ``rec``, made by the factory of new jobs and put back where it was (running or paused).

    ``stored`` is how many of its chunks the store has (None: all the spool holds).
    Raises OSError or the factory's errors (the spool is closed then).
    """
    info = rec.info
    assert info.pid is not None
    out, last_output = resume_output(spool, stored, buffer_size, info.started_at)
    start, lost = made_from(rec)
    try:
        job = build(start.params, info.peer, info.id, list(info.argv), info.shell, info.cwd, out, info.limits)
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
    job.tree = resources.adopt(job, job.pid, job.pgid, reaper=rec.shim_pid, cgroup=info.cgroup)
    job.tree.leader_start = rec.leader_start
    job.tree.reaper_start = rec.shim_start
    job.shim_pid = rec.shim_pid
    job.adopted = True
    job.move(JobState.STARTING)
    job.move(JobState.RUNNING)
    if shimjob.is_stopped(job.pid, rec.leader_start):
        job.move(JobState.PAUSED)  # paused (SIGSTOP) under the previous daemon
    return job
