"""Reading /proc: per-process usage (none backend, fallbacks), host memory and load."""

from __future__ import annotations

import os

from ccxd.proc.stat import stat_fields

__all__ = ["ProcUsage", "host_load", "host_memory_available", "proc_usage", "read_psi_some"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class ProcUsage:
    """Summed usage of a set of processes."""

    __slots__ = ("cpu_seconds", "io_read_bytes", "io_write_bytes", "memory", "threads")

    def __init__(self) -> None:
        self.cpu_seconds = 0.0
        self.memory = 0
        self.threads = 0
        self.io_read_bytes = 0
        self.io_write_bytes = 0


def proc_usage(pids: list[int]) -> ProcUsage:
    """CPU (including reaped children), resident memory, threads and IO of ``pids``."""
    u = ProcUsage()
    for pid in pids:
        rest = stat_fields(pid)
        if rest is None:
            continue
        try:
            # utime stime cutime cstime are fields 14-17 (1-based) → rest[11:15]; threads rest[17].
            ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
            u.cpu_seconds += ticks / _TICKS
            u.threads += int(rest[17])
            u.memory += int(rest[21]) * _PAGE  # rss in pages
        except (IndexError, ValueError):
            continue
        try:
            with open(f"/proc/{pid}/io", "rb") as f:
                for line in f:
                    if line.startswith(b"read_bytes:"):
                        u.io_read_bytes += int(line.split()[1])
                    elif line.startswith(b"write_bytes:"):
                        u.io_write_bytes += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return u


def host_memory_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_load() -> float | None:
    """The one-minute load average."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def read_psi_some(path: str) -> float | None:
    """``avg10`` of the ``some`` line of a pressure file (percent), or None."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"some "):
                    for field in line.split()[1:]:
                        if field.startswith(b"avg10="):
                            return float(field[6:])
    except (OSError, ValueError):
        return None
    return None
