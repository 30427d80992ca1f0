"""Small helpers for cgroup files: read, write, keyed stats, kill-and-wait."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal

from ccxd.cgroups.base import CgroupError
from ccxd.proc.stat import ProcInfo, read_stat
from ccxd.proc.tree import send_checked, wait_gone

__all__ = [
    "Handles",
    "kill_until_empty",
    "live",
    "read_int",
    "read_keyed",
    "read_pids",
    "read_text",
    "signal_all",
    "write",
]


def _read(path: str) -> bytes:
    # os-level calls: open() would add an fstat, an ioctl and two lseeks per file,
    # and every job end samples about ten of these files.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = os.read(fd, 65536)
        if len(first) < 4096:
            # cgroup files are seq_files, which fill a read as far as they can: a read
            # short of a page is the whole file (a second read for EOF cost a syscall).
            return first
        parts = [first]
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


class Handles:
    """Open descriptors of one group's files, for a group that outlives its jobs (a v1 pool group).

    Every job's end reads about six counter files of its group and resets three:
    opening and closing each cost about 6 us of the 7 a read takes.  A file is
    opened the first time it is used and read or written in place from then on
    (a cgroup file is generated afresh by every read from offset 0).  A failed
    read or write closes the descriptor, so a group removed behind our back is
    reported like a missing file.
    """

    __slots__ = ("_fds",)

    def __init__(self) -> None:
        self._fds: dict[tuple[str, int], int] = {}

    def _fd(self, path: str, mode: int) -> int:
        fd = self._fds.get((path, mode))
        if fd is None:
            fd = self._fds[path, mode] = os.open(path, mode | os.O_CLOEXEC)
        return fd

    def _drop(self, path: str, mode: int) -> None:
        fd = self._fds.pop((path, mode), None)
        if fd is not None:
            os.close(fd)

    def read(self, path: str) -> bytes:
        """The whole file; OSError as :func:`os.open` or :func:`os.pread` raise it."""
        try:
            fd = self._fd(path, os.O_RDONLY)
            first = os.pread(fd, 65536, 0)
            if len(first) < 4096:  # a seq_file fills a read: short of a page is all of it
                return first
            parts, pos = [first], len(first)
            while chunk := os.pread(fd, 65536, pos):
                parts.append(chunk)
                pos += len(chunk)
            return b"".join(parts)
        except OSError:
            self._drop(path, os.O_RDONLY)
            raise

    def write(self, path: str, data: bytes) -> None:
        """Write ``data``; OSError as :func:`os.open` or :func:`os.pwrite` raise it."""
        try:
            os.pwrite(self._fd(path, os.O_WRONLY), data, 0)
        except OSError:
            self._drop(path, os.O_WRONLY)
            raise

    def close(self) -> None:
        """Close every descriptor (they are opened again when next used)."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)


def read_text(path: str, handles: Handles | None = None) -> str:
    """The file's text (through ``handles`` if given); raises :class:`CgroupError`."""
    try:
        raw = _read(path) if handles is None else handles.read(path)
    except OSError as exc:
        raise CgroupError(f"cannot read {path}: {exc.strerror or exc}") from None
    return raw.decode("ascii", errors="replace")


def read_int(path: str, handles: Handles | None = None) -> int | None:
    """An integer file (``max`` → None); raises :class:`CgroupError`."""
    text = read_text(path, handles).strip()
    return None if text == "max" else int(text)


def read_keyed(path: str, handles: Handles | None = None) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.events, memory.stat) as a dict."""
    out: dict[str, int] = {}
    for line in read_text(path, handles).splitlines():
        parts = line.split()
        if len(parts) >= 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def write(path: str, value: str, handles: Handles | None = None) -> None:
    """Write one value (through ``handles`` if given); raises :class:`CgroupError` naming file and value."""
    if handles is not None:
        try:
            handles.write(path, value.encode())
        except OSError as exc:
            raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from None
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CgroupError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_pids(procs_file: str) -> list[int]:
    """Processes listed in a ``cgroup.procs`` file (empty if the group is gone)."""
    try:
        return [int(x) for x in _read(procs_file).split()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return []
        raise CgroupError(f"cannot read {procs_file}: {exc.strerror or exc}") from None


def live(pids: list[int]) -> dict[int, ProcInfo]:
    """The pids that are still running (not zombies), with their identity."""
    out = {}
    for pid in pids:
        info = read_stat(pid)
        if info is not None and info.state not in ("Z", "X"):
            out[pid] = info
    return out


def signal_all(members: dict[int, ProcInfo], sig: int = signal.SIGKILL) -> dict[int, ProcInfo]:
    """Signal each process through a checked pidfd; return what was signalled (for waiting)."""
    return {pid: info for pid, info in members.items() if send_checked(info, sig)}


async def _wait_frozen(state_file: str, frozen: str) -> None:
    # v1 reports FREEZING until every task stopped; a fork in flight finishes first.
    for _ in range(200):
        if read_text(state_file).strip() == frozen:
            return
        await asyncio.sleep(0.001)


async def kill_until_empty(procs_file: str, freeze: tuple[str, str, str] | None = None) -> None:
    """SIGKILL every process in the group until it is empty.

    ``freeze`` is ``(file, frozen_value, thawed_value)``: freeze first so no
    process can fork while we read the list, then kill, then thaw so the
    signals are delivered.
    """
    for _ in range(50):
        members = live(read_pids(procs_file))
        if not members:
            return
        if freeze is not None:
            write(freeze[0], freeze[1])
        try:
            if freeze is not None:
                await _wait_frozen(freeze[0], freeze[1])
                members = live(read_pids(procs_file))
            sent = signal_all(members)
        finally:
            if freeze is not None:
                write(freeze[0], freeze[2])
        await wait_gone(sent, 1.0)
    raise CgroupError(f"processes still in {procs_file} after 50 kill rounds")
