"""Jobs that run under a shim and can be adopted by a later daemon (no supervisor logic).

Under the shim (``shim/ccxd-shim.c``) a job's process tree is::

    ccxd ─ ccxd-shim (own session) ─ job leader (own session) ─ …

The shim, not the daemon, owns the job's pipes, writes its output to the spool
and records its exit status in ``<job>.exit``.  The daemon writes
``<job>.shim`` (an :class:`AdoptRecord`) once the job runs; a daemon that starts
later finds these files, checks that the shim still lives (pid and start time)
and adopts the job.  Both files are removed when the job's end is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import msgspec

from ccxd.output.follower import FollowedSpool
from ccxd.protocol import JobInfo
from ccxd.supervision.reaper import ExitStatus
from ccxd.supervision.spawn import SpawnError, _explain
from ccxd.supervision.tree import _read_stat

__all__ = [
    "AdoptRecord",
    "ShimStart",
    "exit_path",
    "is_stopped",
    "job_path",
    "load_records",
    "pid_alive",
    "read_exit",
    "remove_files",
    "save_record",
    "spawn_shim",
    "wait_pid",
]


class AdoptRecord(msgspec.Struct):
    """What a later daemon needs to adopt a running job."""

    info: JobInfo
    shim_pid: int
    shim_start: int
    leader_start: int


class ShimStart:
    """A shim started by this daemon: its pid and the pipe its report comes on."""

    __slots__ = ("overflow", "pid", "report")

    def __init__(self, pid: int, report: int, overflow: int) -> None:
        self.pid = pid
        self.report = report
        self.overflow = overflow  # the shim's stdout: output past a cut of the spool


def job_path(spool_dir: Path, job_id: str) -> Path:
    """The job's adoption record (next to its admission record, ``<job>.job``)."""
    return spool_dir / f"{job_id}.shim"


def exit_path(spool_dir: Path, job_id: str) -> Path:
    """Where the shim writes the leader's exit status."""
    return spool_dir / f"{job_id}.exit"


def spawn_shim(
    shim: str,
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    spool: FollowedSpool,
    exit_file: Path,
    chunk_size: int,
    stdin_data: bytes | None,
    join_files: Sequence[str] = (),
) -> ShimStart:
    """Start ``argv`` under the shim; raise :class:`SpawnError` (bad cwd, no shim).

    ``join_files`` are the ``cgroup.procs`` files the job joins before it execs.
    The shim creates the spool's files when the job first writes.
    """
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    overflow_r, overflow_w = os.pipe2(os.O_CLOEXEC)
    stdin: int = subprocess.DEVNULL
    memfd = None
    if stdin_data is not None:
        # Input lives in memory the job reads at its pace: no writer in the daemon that
        # a restart could cut short.
        memfd = os.memfd_create("ccxd-input", os.MFD_CLOEXEC)
        view = memoryview(stdin_data)
        while view:
            view = view[os.write(memfd, view) :]
        os.lseek(memfd, 0, os.SEEK_SET)
        stdin = memfd
    args = [
        shim,
        str(spool.data_path),
        str(spool.index_path),
        str(report_w),
        str(exit_file),
        str(chunk_size),
        str(spool.limit),
        "\n".join(join_files) or "-",
        f"CCXD_JOB_ID={env['CCXD_JOB_ID']}" if "CCXD_JOB_ID" in env else "-",
        "--",
        *argv,
    ]
    try:
        proc = subprocess.Popen(
            args,
            stdin=stdin,
            stdout=overflow_w,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env={k: v for k, v in env.items() if k != "CCXD_JOB_ID"},  # the shim is not the job
            start_new_session=True,
            close_fds=True,
            pass_fds=(report_w,),
        )
    except OSError as exc:
        os.close(report_r)
        os.close(overflow_r)
        if exc.filename == shim:
            raise SpawnError(f"cannot start the job shim {shim!r}: {exc.strerror or exc}") from None
        raise SpawnError(_explain(exc, argv, cwd)) from None
    finally:
        os.close(report_w)
        os.close(overflow_w)
        if memfd is not None:
            os.close(memfd)
    proc.returncode = 0  # the reaper owns the exit status (see spawn.py)
    os.set_blocking(overflow_r, False)
    return ShimStart(proc.pid, report_r, overflow_r)


async def read_report(start: ShimStart, argv: list[str], cwd: str) -> int:
    """The job leader's pid once the shim exec'd it; :class:`SpawnError` if it could not."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    os.set_blocking(start.report, False)
    buf = bytearray()

    def readable() -> None:
        try:
            data = os.read(start.report, 256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buf.extend(data)
        if not data or b"\n" in buf:
            loop.remove_reader(start.report)
            if not done.done():
                done.set_result(None)

    loop.add_reader(start.report, readable)
    try:
        await done
    finally:
        loop.remove_reader(start.report)
        os.close(start.report)
    words = bytes(buf).split()
    if len(words) >= 2 and words[0] == b"P":
        return int(words[1])
    if len(words) >= 3 and words[0] == b"E":
        code = int(words[1])
        stage = words[2].decode()
        if stage == "cgroup":
            raise SpawnError(f"cannot join the job's cgroup: {os.strerror(code)}")
        if stage == "shim":
            raise SpawnError(f"the job shim could not start the job: {os.strerror(code)}")
        return _raise_exec(code, argv, cwd)
    raise SpawnError("the job shim died before starting the job")


def _raise_exec(code: int, argv: list[str], cwd: str) -> int:
    if code in (errno.ENOENT, errno.EACCES):
        raise SpawnError(_explain(OSError(code, os.strerror(code), argv[0]), argv, cwd))
    raise SpawnError(f"cannot start {argv[0]!r}: {os.strerror(code)}")


def read_exit(path: Path) -> ExitStatus | None:
    """The exit status the shim recorded, or None if there is none (yet)."""
    try:
        words = path.read_text().split()
    except OSError:
        return None
    if len(words) != 2:
        return None
    code, sig = words
    if sig != "-":
        return ExitStatus(None, int(sig))
    return ExitStatus(int(code), None)


def save_record(spool_dir: Path, record: AdoptRecord) -> None:
    """Write the adoption record (atomically: a reader sees all of it or nothing)."""
    path = job_path(spool_dir, record.info.id)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, msgspec.json.encode(record))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_records(spool_dir: Path) -> list[AdoptRecord]:
    """Every adoption record left in ``spool_dir`` (unreadable ones are dropped)."""
    found = []
    decoder = msgspec.json.Decoder(AdoptRecord)
    for path in sorted(spool_dir.glob("*.shim")):
        try:
            found.append(decoder.decode(path.read_bytes()))
        except (OSError, msgspec.DecodeError):
            path.unlink(missing_ok=True)
    return found


def remove_files(spool_dir: Path, job_id: str) -> None:
    """Forget the adoption record and exit status of a job whose end is recorded."""
    for path in (job_path(spool_dir, job_id), exit_path(spool_dir, job_id)):
        path.unlink(missing_ok=True)


def pid_alive(pid: int, start: int) -> bool:
    """True while ``pid`` is the (non-zombie) process that started at ``start``."""
    info = _read_stat(pid)
    return info is not None and info.start == start and info.state not in ("Z", "X")


def is_stopped(pid: int, start: int) -> bool:
    """True if ``pid`` (started at ``start``) is stopped by a signal (a paused job)."""
    info = _read_stat(pid)
    return info is not None and info.start == start and info.state == "T"


def start_time(pid: int) -> int:
    """The start time of ``pid`` (clock ticks since boot), -1 if it is gone."""
    info = _read_stat(pid)
    return info.start if info is not None else -1


async def wait_pid(pid: int, start: int) -> None:
    """Wait until a process that is not our child exits (its pidfd becomes readable)."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if not pid_alive(pid, start):
            return
        fut: asyncio.Future[None] = loop.create_future()

        def exited() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, exited)
        try:
            await fut
        finally:
            loop.remove_reader(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
