"""Finding and signalling every process of a job, and only those.

A job's processes are: its process group and session (the leader called
``setsid``), every descendant of those, and orphans that ccxd adopted as
subreaper whose environment carries the job's ``CCXD_JOB_ID``, with their
descendants.  A job under its shim (a subreaper of its own) is simpler
and cheaper: every descendant of the shim, found without reading all of
/proc.  Signals go through pidfds opened after the process's start time was
checked, so a recycled PID is never hit.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from collections.abc import Callable

from ccxd.proc.stat import ProcInfo, read_stat

__all__ = [
    "ProcInfo",
    "ProcessTree",
    "children_of",
    "descendants",
    "is_subreaper",
    "own_children",
    "read_stat",
    "scan_processes",
    "send_checked",
    "wait_gone",
]

_snapshot: dict[int, ProcInfo] | None = None


def _forget_snapshot() -> None:
    global _snapshot
    _snapshot = None


def scan_processes() -> dict[int, ProcInfo]:
    """Every live (non-zombie) process on the machine.

    Inside an event loop, callers in the same loop iteration share one scan: a
    scan reads every /proc entry (milliseconds per thousand processes), and
    cancelling a thousand jobs at once must not cost a thousand scans each.
    A shared scan is at most one iteration old; killing re-scans until nothing
    is left, so a process forked meanwhile is still found.
    """
    global _snapshot
    if _snapshot is not None:
        return _snapshot
    procs = _scan_processes()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return procs
    _snapshot = procs
    loop.call_soon(_forget_snapshot)
    return procs


def _scan_processes() -> dict[int, ProcInfo]:
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_stat(int(name))
            if info is not None and info.state not in ("Z", "X"):
                procs[info.pid] = info
    return procs


_PR_GET_CHILD_SUBREAPER = 37
_subreaper = False


def is_subreaper() -> bool:
    """True once this process adopts orphaned descendants (cached: it never stops)."""
    global _subreaper
    if not _subreaper:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            flag = ctypes.c_int(0)
            ok = libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
            _subreaper = ok and bool(flag.value)
        except (OSError, AttributeError):
            return False
    return _subreaper


def own_children() -> list[int] | None:
    """Pids of this process's children, from every thread's ``children`` file; None if unknown."""
    return children_of("self")


def children_of(pid: int | str) -> list[int] | None:
    """Pids of ``pid``'s children, from every thread's ``children`` file; None if unknown (gone)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    found: list[int] = []
    for tid in tids:
        try:
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
            try:
                raw = b""
                while chunk := os.read(fd, 65536):
                    raw += chunk
            finally:
                os.close(fd)
            found += [int(p) for p in raw.split()]
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended
            return None  # no children files on this kernel
        except OSError:
            return None
    return found


def descendants(pid: int, start: int | None = None) -> dict[int, ProcInfo] | None:
    """Every live descendant of ``pid`` (not ``pid``); None if ``pid`` is gone or was recycled.

    Reads only the subtree, not all of /proc: what a tree whose orphans go to
    a subreaper of its own (the job's shim) needs, however many jobs run.
    """
    me = read_stat(pid)
    if me is None or me.state in ("Z", "X") or (start is not None and me.start != start):
        return None  # a dead subreaper's orphans went further up: the caller must scan
    kids = children_of(pid)
    if kids is None:
        return None
    found: dict[int, ProcInfo] = {}
    stack = kids
    while stack:
        child = stack.pop()
        if child in found:
            continue
        info = read_stat(child)
        if info is None or info.state in ("Z", "X"):
            continue  # gone, or a zombie: it has no children of its own
        found[child] = info
        stack.extend(children_of(child) or ())
    return found


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


class ProcessTree:
    """The processes of one job, found on demand."""

    def __init__(
        self, job_id: str, leader: int, pgid: int, reaper: int | None = None, reaper_start: int | None = None
    ) -> None:
        """``reaper_start``: the reaper's start time when the caller read it already."""
        self.job_id = job_id
        self.leader = leader
        self.pgid = pgid
        # Who adopts the job's orphans: the daemon (subreaper), or the job's shim.
        self.reaper = reaper
        if reaper is not None and reaper_start is None:
            reaper_info = read_stat(reaper)
            reaper_start = reaper_info.start if reaper_info is not None else None
        self.reaper_start = reaper_start if reaper is not None and reaper_start != -1 else None
        info = read_stat(leader)
        self.leader_start = info.start if info is not None else -1
        self._marker = f"CCXD_JOB_ID={job_id}".encode()

    def forget_reaper(self) -> None:
        """The job's shim is through with it: a pooled shim's next job is below it, not this one's."""
        self.reaper = self.reaper_start = None

    def nothing_left(self, expected_child: Callable[[int], bool]) -> bool:
        """True only when, after the leader was reaped, no process of the job can be left.

        Saves the whole-machine /proc scan of :meth:`members` on every job end.
        A surviving job process has a live parent chain that ends either in the
        leader's process group, or at ccxd: as subreaper it adopts every orphan,
        and a process's parent is a job process unless the parent was the leader.
        So an empty process group plus no child of ccxd that nobody awaits
        (``expected_child``: leaders of other jobs, the embedded Redis …) means
        nothing is left.  Any doubt answers False, and the caller scans.
        """
        if not is_subreaper():
            return False
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            pass
        except OSError:
            return False
        else:
            return False
        children = own_children()
        return children is not None and all(expected_child(pid) for pid in children)

    def members(self, procs: dict[int, ProcInfo] | None = None) -> dict[int, ProcInfo]:
        """The job's live processes right now."""
        if procs is None and self.reaper is not None and self.reaper_start is not None:
            # The shim is the job's subreaper: every process of the job is below it,
            # orphans included, and nothing else is.
            below = descendants(self.reaper, self.reaper_start)
            if below is not None:
                return below
        procs = scan_processes() if procs is None else procs
        me = os.getpid() if self.reaper is None else self.reaper
        children: dict[int, list[int]] = {}
        for p in procs.values():
            children.setdefault(p.ppid, []).append(p.pid)
        # The kernel never hands out a PID still used as a group or session id,
        # so the group is ours unless a different process now owns the leader's PID.
        owner = procs.get(self.pgid)
        ours = owner is None or owner.start == self.leader_start
        seeds = (
            [p.pid for p in procs.values() if p.pgrp == self.pgid or p.session == self.pgid] if ours else []
        )
        # Orphans adopted by the daemon or the shim (subreapers) that carry the job's marker.
        seeds += [pid for pid in children.get(me, ()) if _has_marker(pid, self._marker)]
        found: dict[int, ProcInfo] = {}
        stack = seeds
        while stack:
            pid = stack.pop()
            if pid in found or pid == me or pid not in procs:
                continue
            found[pid] = procs[pid]
            stack.extend(children.get(pid, ()))
        return found

    def signal(self, sig: int, members: dict[int, ProcInfo] | None = None) -> int:
        """Send ``sig`` to every member; return how many were signalled."""
        members = self.members() if members is None else members
        sent = 0
        for info in members.values():
            if send_checked(info, sig):
                sent += 1
        return sent

    async def terminate(self, grace: float) -> None:
        """SIGTERM everything, wait up to ``grace`` seconds, then SIGKILL what is left."""
        members = self.members()
        if members:
            self.signal(signal.SIGTERM, members)
            self.signal(signal.SIGCONT, members)  # stopped processes must see the TERM
            await wait_gone(members, grace)
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL until no member is left (members may fork while we kill)."""
        for _ in range(50):
            members = self.members()
            if not members:
                return
            self.signal(signal.SIGKILL, members)
            await wait_gone(members, 1.0)


def send_checked(info: ProcInfo, sig: int) -> bool:
    """Signal ``info.pid`` only if it is still the process we scanned."""
    try:
        fd = os.pidfd_open(info.pid)
    except OSError:
        return False
    try:
        now = read_stat(info.pid)
        if now is None or now.start != info.start:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


async def wait_gone(members: dict[int, ProcInfo], timeout: float) -> None:
    """Wait until every process in ``members`` has exited, at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[None]] = []
    fds: list[int] = []
    for info in members.values():
        try:
            fd = os.pidfd_open(info.pid)
        except OSError:
            continue
        now = read_stat(info.pid)
        if now is None or now.start != info.start or now.state in ("Z", "X"):
            os.close(fd)
            continue
        fut: asyncio.Future[None] = loop.create_future()
        # A pidfd becomes readable when its process exits.
        loop.add_reader(fd, _resolve, fut)
        fds.append(fd)
        waiters.append(fut)
    try:
        if waiters:
            await asyncio.wait(waiters, timeout=timeout)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
