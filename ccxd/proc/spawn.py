"""Starting a job's process: its own session, pipes we own, no ``preexec_fn``.

``subprocess.Popen`` without ``preexec_fn`` uses ``vfork``, which measured far
faster here than uvloop's fork-based spawn; ``start_new_session`` puts the job in
its own session and process group.  The exit status is collected by the
:class:`~ccxd.proc.reaper.Reaper`, never by ``Popen``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import subprocess

from ccxd import fdlimit

__all__ = ["SpawnError", "Spawned", "spawn", "write_input"]

_PIPE_SIZE = 1024 * 1024


class SpawnError(Exception):
    """The process could not be started; the message says why, for people."""


class Spawned:
    """A started process and the read ends of its output pipes."""

    __slots__ = ("pgid", "pid", "stderr", "stdin", "stdout")

    def __init__(self, pid: int, stdout: int, stderr: int, stdin: int | None) -> None:
        self.pid = pid
        self.pgid = pid  # start_new_session makes the child its group's leader
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        # A bigger pipe means fewer wake-ups per megabyte for fast writers.
        fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    return r, w


def spawn(argv: list[str], cwd: str, env: dict[str, str], with_input: bool) -> Spawned:
    """Start ``argv`` in ``cwd`` with exactly ``env``; raise :class:`SpawnError`."""
    out_r, out_w = _pipe()
    err_r, err_w = _pipe()
    in_r: int | None = None
    in_w: int | None = None
    if with_input:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=in_r if in_r is not None else subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        for fd in (out_r, err_r, in_w):
            if fd is not None:
                os.close(fd)
        raise SpawnError(_explain(exc, argv, cwd)) from None
    finally:
        for fd in (out_w, err_w, in_r):
            if fd is not None:
                os.close(fd)
    # The reaper owns the exit status; make Popen believe it is already collected so
    # neither its destructor nor subprocess._cleanup() ever calls waitpid on it.
    proc.returncode = 0
    fdlimit.give_back(proc.pid)
    for fd in (out_r, err_r, in_w):
        if fd is not None:
            os.set_blocking(fd, False)
    return Spawned(proc.pid, out_r, err_r, in_w)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _explain(exc: OSError, argv: list[str], cwd: str) -> str:
    target = exc.filename
    if target == cwd or (target is None and exc.errno in (errno.ENOENT, errno.ENOTDIR)):
        if exc.errno == errno.ENOENT:
            return f"working directory {cwd!r} does not exist"
        if exc.errno == errno.ENOTDIR:
            return f"working directory {cwd!r} is not a directory"
        if exc.errno == errno.EACCES:
            return f"working directory {cwd!r} is not accessible"
    if exc.errno == errno.ENOENT:
        return f"program {argv[0]!r} not found"
    if exc.errno == errno.EACCES:
        return f"program {argv[0]!r} is not executable"
    return f"cannot start {argv[0]!r}: {exc.strerror or exc}"


async def write_input(fd: int, data: bytes) -> None:
    """Write ``data`` to a job's stdin without blocking the loop, then close it."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    try:
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                await _writable(loop, fd)
    except BrokenPipeError:
        pass  # the job stopped reading; that is its business
    finally:
        os.close(fd)
