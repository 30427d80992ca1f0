"""Reaping child processes: one place collects the exit status of every child.

A watched child is known by a pidfd, which becomes readable when the child
exits (uvloop keeps SIGCHLD for itself, and a pidfd needs no signal at all).
ccxd is also a *child subreaper*, so processes that a job orphans (double fork,
``setsid`` daemons) are re-parented to ccxd instead of init: they stay findable
and a periodic sweep reaps them instead of leaving zombies.  Every child of
the daemon must be watched here; nothing else may call ``waitpid``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os

__all__ = ["ExitStatus", "Reaper", "become_subreaper"]

log = logging.getLogger("ccxd.supervision")

_PR_SET_CHILD_SUBREAPER = 36
_SWEEP_INTERVAL = 1.0  # seconds between sweeps for orphans adopted as subreaper


class ExitStatus:
    """How a process ended: an exit code, or the signal that killed it."""

    __slots__ = ("code", "signal")

    def __init__(self, code: int | None, signal: int | None) -> None:
        self.code = code
        self.signal = signal

    def __repr__(self) -> str:
        return f"ExitStatus(code={self.code}, signal={self.signal})"


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux only); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Reaper:
    """Collects exit statuses of all children as SIGCHLD arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watched: dict[int, asyncio.Future[ExitStatus]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.adopted_reaped = 0

    def start(self) -> None:
        """Begin the periodic sweep for adopted orphans."""
        self._sweep()

    def _sweep(self) -> None:
        self.reap()
        self._sweeper = self._loop.call_later(_SWEEP_INTERVAL, self._sweep)

    def stop(self) -> None:
        """Stop the sweep."""
        if self._sweeper is not None:
            self._sweeper.cancel()

    def watch(self, pid: int) -> asyncio.Future[ExitStatus]:
        """A future resolved with ``pid``'s exit status.

        Call it in the same loop iteration that spawned ``pid``: SIGCHLD is
        handled as a loop callback, so the child cannot be reaped before.
        """
        fut = self._loop.create_future()
        self._watched[pid] = fut
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # already reaped by a sweep (cannot happen) or no pidfd support
            self._loop.call_soon(self.reap)
            return fut
        self._loop.add_reader(fd, self._exited, fd)
        return fut

    def watching(self, pid: int) -> bool:
        """True while someone awaits ``pid``'s exit (a job leader, the embedded Redis …)."""
        return pid in self._watched

    def _exited(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        os.close(fd)
        self.reap()

    def reap(self) -> None:
        """Reap every exited child without blocking."""
        while True:
            try:
                res = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:  # pragma: no cover
                continue
            if res is None or res.si_pid == 0:
                return
            if res.si_code == os.CLD_EXITED:
                status = ExitStatus(res.si_status, None)
            else:
                status = ExitStatus(None, res.si_status)
            fut = self._watched.pop(res.si_pid, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(status)
            else:
                self.adopted_reaped += 1
                log.debug("reaped adopted orphan %d (%s)", res.si_pid, status)
