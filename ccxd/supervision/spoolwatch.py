"""One inotify descriptor on the spool and job directories: wakes the daemon when a shim writes.

Shims write a job's output records to ``<job>.idx`` in the spool directory and
its exit status to ``<job>.exit`` (by rename) in the job directory (the two are
the same where no separate job directory is used).  One inotify descriptor
serves every job, so a thousand jobs cost one file descriptor, not two
thousand pipes.  Events are coalesced per read: a job is told once per wake-up
however many writes it made.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

__all__ = ["SpoolWatch"]

log = logging.getLogger("ccxd.supervision")

_IN_MODIFY = 0x00000002
_IN_MOVED_TO = 0x00000080
_IN_Q_OVERFLOW = 0x00004000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")


class SpoolWatch:
    """Calls a job's ``on_output`` / ``on_exit`` when its shim writes."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, directory: Path, exit_directory: Path | None = None
    ) -> None:
        """Watch ``directory`` for output, and ``exit_directory`` for exit files once a job needs them."""
        self._loop = loop
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(fd, os.fsencode(directory), _IN_MODIFY | _IN_MOVED_TO) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"cannot watch {directory}")
        self._fd = fd
        self._libc = libc
        # Watched from the first job that needs its exit file (an adopted one): the
        # daemon's own shims send the exit status down their link, and an event per
        # job would wake the daemon for nothing.
        self._exit_directory = exit_directory if exit_directory not in (None, directory) else None
        self._output: dict[str, Callable[[], None]] = {}
        self._exit: dict[str, Callable[[], None]] = {}
        loop.add_reader(fd, self._read)

    def follow(
        self, job_id: str, on_output: Callable[[], None], on_exit: Callable[[], None] | None = None
    ) -> None:
        """Start calling back for ``job_id`` (before its shim can write anything).

        ``on_exit`` is for a job whose exit status only its exit file tells (an adopted one).
        """
        self._output[job_id] = on_output
        if on_exit is not None:
            self._exit[job_id] = on_exit
            self._watch_exits()

    def _watch_exits(self) -> None:
        path, self._exit_directory = self._exit_directory, None
        if path is not None and self._libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_MOVED_TO) < 0:
            # Adopted jobs are then seen to end when their shim does, a moment later.
            log.warning("cannot watch %s: %s", path, os.strerror(ctypes.get_errno()))

    def forget(self, job_id: str) -> None:
        """Stop calling back for ``job_id``."""
        self._output.pop(job_id, None)
        self._exit.pop(job_id, None)

    def _read(self) -> None:
        try:
            buf = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        outputs: set[str] = set()
        exits: set[str] = set()
        pos = 0
        overflow = False
        while pos + _EVENT.size <= len(buf):
            _wd, mask, _cookie, length = _EVENT.unpack_from(buf, pos)
            name = buf[pos + _EVENT.size : pos + _EVENT.size + length].rstrip(b"\0")
            pos += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                overflow = True
                continue
            stem, _, ext = name.decode(errors="replace").rpartition(".")
            if ext == "idx" and mask & _IN_MODIFY:
                outputs.add(stem)
            elif ext == "exit" and mask & _IN_MOVED_TO:
                exits.add(stem)
        if overflow:
            log.warning("inotify queue overflowed; checking every followed job")
            outputs = set(self._output)
            exits = set(self._exit)
        for job_id in outputs:
            cb = self._output.get(job_id)
            if cb is not None:
                cb()
        for job_id in exits:
            cb = self._exit.get(job_id)
            if cb is not None:
                cb()

    def close(self) -> None:
        """Stop watching."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
