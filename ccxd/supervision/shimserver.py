"""A spawn server for job shims: ``ccxd-shim --server`` and its pool of shims.

Starting a shim from the daemon is a vfork and an exec, and the daemon's only
thread is suspended until the child has exec'd.  On a machine whose cores are
busy (the case that matters: many jobs at once) the child waits for the
scheduler first, and the event loop stood still for most of a millisecond per
job.  The server is one small C process started once; the daemon sends it a
request (one datagram on a ``SOCK_SEQPACKET`` socket, the job's pipes attached)
and goes on.  The server hands it to an idle shim of its pool (forking one,
without an exec, when none is idle), and the reply brings the shim's pid.  A
shim runs one job at a time and then waits for the next: a fork and an exit
per job were a third of a shim's CPU time.

The shims are the server's children, not the daemon's: the server reaps them,
and the daemon learns that a shim is through with a job from its link (its
stdout; ``shimjob.ShimLink``): a done frame, or the end of file.  A pooled
shim takes its next job only once the daemon has closed the link, so until
then the processes below it are that job's (see ``ShimLink.on_gone``).
Requests that do not fit one datagram, and every spawn after the server
failed, fall back to starting the shim directly (``shimjob.spawn_shim``).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import logging
import os
import socket
import subprocess

from ccxd import fdlimit
from ccxd.proc.reaper import Reaper

__all__ = ["REQUEST_MAX", "ServerGone", "ShimServer"]

log = logging.getLogger("ccxd.supervision")

REQUEST_MAX = 200 * 1024
"""Largest request sent (the server reads up to 256 KiB; the socket's send buffer holds about 208 KiB)."""


class ServerGone(Exception):
    """The server could not take the request (not started, died, or the request is too big)."""


class ShimServer:
    """The daemon's end of ``ccxd-shim --server`` (started with the first request)."""

    def __init__(self, shim: str, reaper: Reaper) -> None:
        self._shim = shim
        self._reaper = reaper
        self._sock: socket.socket | None = None
        self._pid = 0
        self._waiting: collections.deque[asyncio.Future[tuple[int, int | None]]] = collections.deque()
        self._failures = 0
        self.disabled = False
        """True once the server failed to start or died too often: spawns go direct."""

    @property
    def pid(self) -> int:
        """The server's pid (0 when it is not running)."""
        return self._pid

    def _ensure(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        if self.disabled:
            raise ServerGone("the shim server is disabled")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                [self._shim, "--server"],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # a job's terminal signals are not the server's business
            )
        except OSError as exc:
            ours.close()
            self.disabled = True
            log.warning("cannot start the shim server (%s); starting shims directly", exc)
            raise ServerGone(str(exc)) from None
        finally:
            theirs.close()
        proc.returncode = 0  # the reaper owns the exit status
        fdlimit.give_back(proc.pid)  # before it is asked for a shim: every shim and job inherits it
        loop = asyncio.get_running_loop()
        self._pid = proc.pid
        pid = proc.pid
        self._reaper.watch(pid).add_done_callback(lambda _f: self._ended(pid))
        ours.setblocking(False)
        loop.add_reader(ours.fileno(), self._readable)
        self._sock = ours
        return ours

    def spawn(self, fields: list[str], fds: list[int]) -> asyncio.Future[tuple[int, int | None]]:
        """Ask for one shim: ``fields`` (cwd, env count, env…, shim arguments), ``fds`` to pass.

        The future has the shim's pid and start time (None if the server could not read it).  Raises
        :class:`ServerGone` when the request cannot be sent (then nothing was
        started); the future fails with it when the server died before answering.
        """
        data = os.fsencode("\0".join(fields) + "\0")  # NUL bytes in fields are refused at admission
        if len(data) > REQUEST_MAX:
            raise ServerGone("the request is too big for one datagram")
        sock = self._ensure()
        try:
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        except BlockingIOError:
            raise ServerGone("the shim server is not keeping up") from None
        except OSError as exc:
            self._lost(f"cannot send to the shim server: {exc}")
            raise ServerGone(str(exc)) from None
        fut: asyncio.Future[tuple[int, int | None]] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        return fut

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(f"the shim server's socket failed: {exc}")
                return
            if not data:
                self._lost("the shim server closed its socket")
                return
            fut = self._waiting.popleft() if self._waiting else None
            if fut is None or fut.done():
                continue
            words = data.split()
            if len(words) in (2, 3) and words[0] == b"P":
                fut.set_result((int(words[1]), int(words[2]) if len(words) == 3 else None))
            else:
                code = int(words[1]) if len(words) == 2 and words[1].isdigit() else 0
                fut.set_exception(OSError(code, os.strerror(code) if code else data.decode(errors="replace")))

    def _ended(self, pid: int) -> None:
        if pid == self._pid:
            self._lost(f"the shim server (pid {pid}) exited")

    def _lost(self, why: str) -> None:
        sock, self._sock, self._pid = self._sock, None, 0
        if sock is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        self._failures += 1
        if self._failures >= 3:
            self.disabled = True
        log.warning("%s; %s", why, "starting shims directly" if self.disabled else "restarting it on demand")
        waiting, self._waiting = self._waiting, collections.deque()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(ServerGone(why))

    def close(self) -> None:
        """Close the socket: the server exits, and so do its shims once their jobs have ended."""
        sock, self._sock, self._pid = self._sock, None, 0
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
