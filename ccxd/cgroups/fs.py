"""Small helpers for cgroup files: read, write, keyed stats, kill-and-wait."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal

from ccxd.cgroups.base import CgroupError
from ccxd.supervision.tree import ProcInfo, _read_stat, send_checked, wait_gone

__all__ = [
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


def read_text(path: str) -> str:
    """The file's text; raises :class:`CgroupError`."""
    try:
        return _read(path).decode("ascii", errors="replace")
    except OSError as exc:
        raise CgroupError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_int(path: str) -> int | None:
    """An integer file (``max`` → None); raises :class:`CgroupError`."""
    text = read_text(path).strip()
    return None if text == "max" else int(text)


def read_keyed(path: str) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.events, memory.stat) as a dict."""
    out: dict[str, int] = {}
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) >= 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def write(path: str, value: str) -> None:
    """Write one value; raises :class:`CgroupError` naming file and value."""
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
        info = _read_stat(pid)
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
