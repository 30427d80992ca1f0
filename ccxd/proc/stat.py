"""Reading ``/proc/PID/stat``: the one parser of its fields."""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["ProcInfo", "read_stat", "stat_fields"]


class ProcInfo(NamedTuple):
    """What /proc/PID/stat says about one process."""

    pid: int
    ppid: int
    pgrp: int
    session: int
    state: str
    start: int


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (``state`` first); None when it is gone.

    Field N of proc(5) (1-based) is item N - 3.
    """
    # os-level calls: open() would add an fstat, an ioctl and two lseeks per file,
    # and this runs for every process of every job (and all of /proc on a scan).
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)  # ~300 bytes: /proc hands a stat file over in one read
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(b")") + 2 :].split()


def read_stat(pid: int) -> ProcInfo | None:
    """Parent, group, session, state and start time of ``pid``; None when it is gone."""
    rest = stat_fields(pid)
    if rest is None:
        return None
    try:
        return ProcInfo(pid, int(rest[1]), int(rest[2]), int(rest[3]), rest[0].decode(), int(rest[19]))
    except (IndexError, ValueError):
        return None
