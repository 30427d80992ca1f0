"""Jobs that run under a shim and can be adopted by a later daemon (no supervisor logic).

Under the shim (``shim/ccxd-shim.c``) a job's process tree is::

    ccxd ─ ccxd-shim (own session) ─ job leader (own session) ─ …

The shim, not the daemon, owns the job's pipes, writes its output to the spool
and records its exit status in ``<job>.exit``.  Once the job runs, the daemon
rewrites the job's file (``<job>.job``, see ``jobfile.py``) as an
:class:`AdoptRecord`: the job record with the shim's pid and start times next to
it, and what the job was made from (:class:`JobStart`: its whole request and
retry chain, secrets left out); a daemon that starts later finds these records,
checks that the shim still lives (pid and start time) and adopts the job
(``adoption.py``).  When the job's end is recorded
the exit status is removed and the job file rewritten without the shim's
fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from ccxd import fdlimit
from ccxd.jobs import jobfile
from ccxd.output.follower import FollowedSpool
from ccxd.output.shimformat import DONE_STREAM, EXIT_STREAM
from ccxd.proc.reaper import ExitStatus
from ccxd.proc.spawn import SpawnError, _explain
from ccxd.proc.tree import read_stat
from ccxd.protocol import JobInfo, StartParams
from ccxd.supervision.shimserver import ServerGone, ShimServer

__all__ = [
    "AdoptRecord",
    "JobStart",
    "ShimLink",
    "ShimStart",
    "exit_path",
    "is_stopped",
    "load_records",
    "pid_alive",
    "read_exit",
    "remove_files",
    "save_record",
    "spawn_shim",
    "start_shim",
    "wait_pid",
]


class JobStart(msgspec.Struct, kw_only=True):
    """What a job was made from, so a later daemon rebuilds it through the same factory.

    ``params`` are the request as it ran (after pre-hooks and the kind's
    ``prepare``); ``retry_base`` and ``concision_level`` are its retry chain
    (``Job.retry_base``).  The values of secret-named variables
    (:func:`ccxd.redact.is_secret_name`) are never written: they are ``***``
    here, listed in ``secret_env``, and read back from the job leader's
    environment at adoption (``adoption.py``).
    """

    params: StartParams
    retry_base: StartParams | None = None
    concision_level: int = 0
    secret_env: list[str] = []


class AdoptRecord(msgspec.Struct):
    """What a later daemon needs to adopt a running job."""

    info: JobInfo
    shim_pid: int
    shim_start: int
    leader_start: int
    start: JobStart | None = None
    """None in the records of versions before 2026-12 (the job is rebuilt from ``info``)."""


class ShimLink:
    """The daemon's end of a shim's stdout, the one pipe between a shim and the daemon that started it.

    The shim writes its report first (``P <pid>`` once the job exec'd, or
    ``E <errno> <stage>``, one line: its REPORT_FD is this pipe too), then frames
    (stream byte, 4-byte little-endian length, data): output past a cut of the
    spool and, with stream 254, the leader's exit status.  End of file means the
    shim is gone (no job process holds this pipe); so does a frame with stream
    253, from a pooled shim done with the job: it waits for this end to close
    before it takes another job (the job's processes are found below its shim,
    see ``on_gone``).  A later daemon, which has no
    link, reads the exit file and waits on the shim's pid instead.  One pipe
    instead of a report pipe, a pidfd and the exit file's inotify event saved
    about twenty system calls and two wake-ups per job.
    """

    def __init__(self, fd: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd = fd
        self.report: asyncio.Future[bytes] = self.loop.create_future()
        """The report line (empty if the shim ended without one)."""
        self.leader_exited: asyncio.Future[None] = self.loop.create_future()
        self.exit_status: ExitStatus | None = None
        self.gone: asyncio.Future[None] = self.loop.create_future()
        """Done at end of file or the done frame: the shim is through with the job."""
        self._on_gone: list[Callable[[], None]] = []
        self._buf = bytearray()
        self._on_frame: Callable[[int, bytes], None] | None = None
        self._early: list[tuple[int, bytes]] = []
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._readable)

    def attach(self, on_frame: Callable[[int, bytes], None]) -> None:
        """Deliver output frames (stream, data) to ``on_frame``, those that came already first."""
        self._on_frame = on_frame
        early, self._early = self._early, []
        for stream, data in early:
            on_frame(stream, data)

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` as the shim is through with the job, before this end closes (now if it is)."""
        if self.gone.done():
            callback()
        else:
            self._on_gone.append(callback)

    def read_now(self) -> bool:
        """Read what the pipe holds now; True if the shim is through with the job."""
        if self.fd >= 0:
            self._readable()
        return self.gone.done()

    def _end(self) -> None:
        # The callbacks run before the close: a pooled shim takes its next job only once
        # this end is closed, and until then the job's processes are the ones below it.
        callbacks, self._on_gone = self._on_gone, []
        for callback in callbacks:
            callback()
        self.close()
        if not self.report.done():
            self.report.set_result(b"")
        if not self.gone.done():
            self.gone.set_result(None)

    def _readable(self) -> None:
        exited = self.leader_exited.done()
        try:
            # Under glibc's mmap threshold: a bigger buffer is an mmap per read.
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end()
            return
        self._buf += data
        if self._parse():
            self._end()
            return
        if not exited and self.leader_exited.done():
            # The shim is through with the job right after the exit status unless job
            # processes are left: seeing that now spares the daemon a look for them.
            self._readable()

    def _parse(self) -> bool:
        """Take in the complete frames; True at the done frame."""
        buf = self._buf
        if not self.report.done():
            end = buf.find(b"\n")
            if end < 0:
                return False
            self.report.set_result(bytes(buf[:end]))
            del buf[: end + 1]
        pos = 0
        while len(buf) - pos >= 5:
            stream = buf[pos]
            size = int.from_bytes(buf[pos + 1 : pos + 5], "little")
            if len(buf) - pos - 5 < size:
                break
            payload = bytes(buf[pos + 5 : pos + 5 + size])
            pos += 5 + size
            if stream == EXIT_STREAM:
                self.exit_status = _parse_exit(payload)
                if not self.leader_exited.done():
                    self.leader_exited.set_result(None)
            elif stream == DONE_STREAM:
                del buf[:pos]
                return True
            elif self._on_frame is None:
                self._early.append((stream, payload))
            else:
                self._on_frame(stream, payload)
        del buf[:pos]
        return False

    def finish(self) -> None:
        """Read what is left (the shim is through with the job: the pipe ends)."""
        while self.fd >= 0:
            self._readable()

    def close(self) -> None:
        """Stop reading."""
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


class ShimStart:
    """A shim started by this daemon: its pid and its link."""

    __slots__ = ("exited", "link", "pid", "start")

    def __init__(
        self, pid: int, link: ShimLink, exited: asyncio.Future[None] | None = None, start: int | None = None
    ) -> None:
        self.pid = pid
        self.link = link
        self.exited = exited
        """Done when the shim is through with the job, for a shim of the spawn server (None: our child)."""
        self.start = start
        """The shim's start time when the spawn server told it (None: read it from /proc)."""


class _ShimFields(msgspec.Struct, kw_only=True):
    """The members a job file holds next to the job record while its shim runs."""

    shim_pid: int | None = None
    shim_start: int = 0
    leader_start: int = 0


class _StartField(msgspec.Struct):
    """The member with what the job was made from (decoded apart: a bad one only loses itself)."""

    start: JobStart | None = None


def exit_path(spool_dir: Path, job_id: str) -> str:
    """Where the shim writes the leader's exit status."""
    return f"{spool_dir}/{job_id}.exit"  # a str: a Path costs more than the file operations on it


def _stdin_fd(stdin_data: bytes | None) -> int | None:
    if stdin_data is None:
        return None
    # Input lives in memory the job reads at its pace: no writer in the daemon that
    # a restart could cut short.
    memfd = os.memfd_create("ccxd-input", os.MFD_CLOEXEC)
    view = memoryview(stdin_data)
    while view:
        view = view[os.write(memfd, view) :]
    os.lseek(memfd, 0, os.SEEK_SET)
    return memfd


def _shim_args(
    report_fd: int,
    argv: list[str],
    env: dict[str, str],
    spool: FollowedSpool,
    exit_file: str,
    chunk_size: int,
    join_files: Sequence[str],
) -> list[str]:
    return [
        str(spool.data_path),
        str(spool.index_path),
        str(report_fd),
        str(exit_file),
        str(chunk_size),
        str(spool.limit),
        "\n".join(join_files) or "-",
        f"CCXD_JOB_ID={env['CCXD_JOB_ID']}" if "CCXD_JOB_ID" in env else "-",
        "--",
        *argv,
    ]


async def start_shim(
    server: ShimServer | None,
    shim: str,
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    spool: FollowedSpool,
    exit_file: str,
    chunk_size: int,
    stdin_data: bytes | None,
    join_files: Sequence[str] = (),
) -> ShimStart:
    """Start ``argv`` under a shim, through the spawn server when there is one.

    Falls back to :func:`spawn_shim` when the server cannot take the request
    (too big, not running).  Raises :class:`SpawnError`.
    """
    if server is None or server.disabled:
        return spawn_shim(shim, argv, cwd, env, spool, exit_file, chunk_size, stdin_data, join_files)
    overflow_r, overflow_w = os.pipe2(os.O_CLOEXEC)
    stdin = _stdin_fd(stdin_data)
    shim_env = [f"{k}={v}" for k, v in env.items() if k != "CCXD_JOB_ID"]  # the shim is not the job
    fields = [cwd, str(len(shim_env)), *shim_env, shim]
    fields += _shim_args(3, argv, env, spool, exit_file, chunk_size, join_files)
    # The report goes down the same pipe as the frames (the server passes it as fd 3).
    fds = [overflow_w, overflow_w] if stdin is None else [overflow_w, overflow_w, stdin]
    try:
        answer = server.spawn(fields, fds)
    except ServerGone:
        answer = None
    finally:
        for fd in dict.fromkeys(fds):
            os.close(fd)
    if answer is None:
        os.close(overflow_r)
        return spawn_shim(shim, argv, cwd, env, spool, exit_file, chunk_size, stdin_data, join_files)
    link = ShimLink(overflow_r)
    try:
        pid, start = await answer
    except (OSError, ServerGone) as exc:
        link.close()
        raise SpawnError(f"the job shim could not be started: {exc}") from None
    return ShimStart(pid, link, link.gone, start)  # the link says when the shim is through with the job


def spawn_shim(
    shim: str,
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    spool: FollowedSpool,
    exit_file: str,
    chunk_size: int,
    stdin_data: bytes | None,
    join_files: Sequence[str] = (),
) -> ShimStart:
    """Start ``argv`` under the shim, as this daemon's child; raise :class:`SpawnError` (bad cwd, no shim).

    ``join_files`` are the ``cgroup.procs`` files the job joins before it execs.
    The shim creates the spool's files when the job first writes.
    """
    overflow_r, overflow_w = os.pipe2(os.O_CLOEXEC)
    report_w = os.dup(overflow_w)  # the report goes down the same pipe as the frames
    memfd = _stdin_fd(stdin_data)
    args = [shim, *_shim_args(report_w, argv, env, spool, exit_file, chunk_size, join_files)]
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL if memfd is None else memfd,
            stdout=overflow_w,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env={k: v for k, v in env.items() if k != "CCXD_JOB_ID"},  # the shim is not the job
            start_new_session=True,
            close_fds=True,
            pass_fds=(report_w,),
        )
    except OSError as exc:
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
    fdlimit.give_back(proc.pid)
    return ShimStart(proc.pid, ShimLink(overflow_r))


async def read_report(start: ShimStart, argv: list[str], cwd: str) -> int:
    """The job leader's pid once the shim exec'd it; :class:`SpawnError` if it could not."""
    words = (await start.link.report).split()
    if len(words) >= 2 and words[0] == b"P":
        return int(words[1])
    if len(words) >= 3 and words[0] == b"E":
        code = int(words[1])
        stage = words[2].decode()
        if stage == "cgroup":
            raise SpawnError(f"cannot join the job's cgroup: {os.strerror(code)}")
        if stage == "shim":
            raise SpawnError(f"the job shim could not start the job: {os.strerror(code)}")
        if stage == "cwd":
            raise SpawnError(_explain(OSError(code, os.strerror(code), cwd), argv, cwd))
        return _raise_exec(code, argv, cwd)
    raise SpawnError("the job shim died before starting the job")


def _raise_exec(code: int, argv: list[str], cwd: str) -> int:
    if code in (errno.ENOENT, errno.EACCES):
        raise SpawnError(_explain(OSError(code, os.strerror(code), argv[0]), argv, cwd))
    raise SpawnError(f"cannot start {argv[0]!r}: {os.strerror(code)}")


def read_exit(path: str) -> ExitStatus | None:
    """The exit status the shim recorded, or None if there is none (yet).

    Raises OSError when there is a file that cannot be read (the daemon out of descriptors).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        raw = os.read(fd, 64)
    finally:
        os.close(fd)
    return _parse_exit(raw)


async def read_exit_patiently(
    path: str, tries: int = 50, pause: float = 0.1
) -> tuple[ExitStatus | None, str]:
    """:func:`read_exit`, tried again for a while when the file cannot be read; the status and why not.

    A daemon short of descriptors must not record a job that exited as killed (issue 19).
    """
    problem = ""
    for _ in range(tries):
        try:
            return read_exit(path), ""
        except OSError as exc:
            problem = f"cannot read the exit file: {exc.strerror or exc}"
            await asyncio.sleep(pause)
    return None, problem


def _parse_exit(raw: bytes) -> ExitStatus | None:
    """``<code> -`` or ``- <signal>`` (the exit file, the exit frame) as a status; None if malformed."""
    words = raw.split()
    if len(words) != 2:
        return None
    code, sig = words
    try:
        if sig != b"-":
            return ExitStatus(None, int(sig))
        return ExitStatus(int(code), None)
    except ValueError:
        return None


def save_record(spool_dir: Path, record: AdoptRecord) -> None:
    """Rewrite the job's file as its adoption record (in place: no new file)."""
    fields = msgspec.json.encode(
        _ShimFields(shim_pid=record.shim_pid, shim_start=record.shim_start, leader_start=record.leader_start)
    )
    extra = fields[1:-1]
    if record.start is not None:
        extra += b',"start":' + msgspec.json.encode(record.start)
    jobfile.save(spool_dir, record.info, extra)


def load_records(spool_dir: Path) -> list[AdoptRecord]:
    """Every adoption record left in ``spool_dir`` (unreadable ones are skipped)."""
    found: dict[str, AdoptRecord] = {}
    fields_of = msgspec.json.Decoder(_ShimFields)
    info_of = msgspec.json.Decoder(JobInfo)
    start_of = msgspec.json.Decoder(_StartField)
    for path in sorted(spool_dir.glob("*.job")):
        try:
            raw = path.read_bytes()
            fields = fields_of.decode(raw)
            if fields.shim_pid is None:
                continue  # queued, starting, finished, or not under a shim
            info = info_of.decode(raw)
        except (OSError, msgspec.DecodeError):
            continue  # crash recovery reports the unreadable ones
        try:
            start = start_of.decode(raw).start
        except msgspec.DecodeError:
            start = None  # adopted from the job record alone
        found[info.id] = AdoptRecord(info, fields.shim_pid, fields.shim_start, fields.leader_start, start)
    return [found[k] for k in sorted(found)]


def remove_files(spool_dir: Path, job_id: str) -> None:
    """Forget the exit status of a job whose end is recorded.

    The job's file stays: the finished record written next replaces the adoption record.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(exit_path(spool_dir, job_id))


def pid_alive(pid: int, start: int) -> bool:
    """True while ``pid`` is the (non-zombie) process that started at ``start``."""
    info = read_stat(pid)
    return info is not None and info.start == start and info.state not in ("Z", "X")


def is_stopped(pid: int, start: int) -> bool:
    """True if ``pid`` (started at ``start``) is stopped by a signal (a paused job)."""
    info = read_stat(pid)
    return info is not None and info.start == start and info.state == "T"


def start_time(pid: int) -> int:
    """The start time of ``pid`` (clock ticks since boot), -1 if it is gone."""
    info = read_stat(pid)
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
