"""One thread that does the supervisor's per-job file work, in the order it was asked for.

Creating a file costs from tens of microseconds to milliseconds on a busy ext4
(inode allocation skips recently deleted inodes; the journal), and the job
file is created while the ``job.start`` request is answered: on the loop, that
create held up every request behind it.  Here the loop only queues the work.

Everything runs in one thread, first in first out, so the files change in
exactly the order the loop asked for: a later daemon that finds them after a
crash sees a state the same code on the loop could also have left (the
admission record before the adoption record, the exit status removed before
the finished record is written).  What the loop must wait for (the job file,
before the job's spawn) is a future from :meth:`DiskQueue.submit`; the rest is
queued with :meth:`DiskQueue.later` and never waits.

Where the files are on tmpfs (the runtime job directory under systemd) the
same work takes microseconds, less than handing it to a thread and back; an
``inline`` queue does it at once, on the caller's thread, in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DiskQueue"]

log = logging.getLogger("ccxd.supervision")

T = TypeVar("T")

_Item = tuple[Callable[[], Any], "asyncio.Future[Any] | None", "asyncio.AbstractEventLoop | None"]


class DiskQueue:
    """A FIFO of file operations done by one thread (a daemon thread, started with the first item).

    The owner calls :meth:`flush` before it exits: work still queued then is done first.
    """

    def __init__(self, name: str = "ccxd-disk", *, inline: bool = False) -> None:
        self._name = name
        self.inline = inline
        """Do the work at once on the caller's thread (cheap file systems)."""
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queued = 0

    def later(self, fn: Callable[[], object]) -> None:
        """Queue ``fn``; its errors are logged, never raised."""
        if self.inline:
            try:
                fn()
            except Exception as exc:
                log.warning("file work %s failed: %s", getattr(fn, "__name__", fn), exc)
            return
        self._put((fn, None, None))

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn``; the future has its result once it ran (after everything queued before it)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self.inline:
            try:
                fut.set_result(fn())
            except Exception as exc:
                fut.set_exception(exc)
            return fut
        self._put((fn, fut, loop))
        return fut

    def _put(self, item: _Item) -> None:
        with self._lock:
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(item)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, fut, loop = item
            try:
                result: object = fn()
            except Exception as exc:
                if fut is None or loop is None:
                    log.warning("file work %s failed: %s", getattr(fn, "__name__", fn), exc)
                else:
                    _reply(loop, fut, None, exc)
            else:
                if fut is not None and loop is not None:
                    _reply(loop, fut, result, None)
            finally:
                with self._lock:
                    self._queued -= 1
                    if not self._queued:
                        self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is done; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._queued, timeout)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait (without blocking the loop) until everything queued so far is done."""
        return await asyncio.get_running_loop().run_in_executor(None, self.wait_idle, timeout)


def _reply(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: object, exc: Exception | None
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, fut, result, exc)


def _settle(fut: asyncio.Future[Any], result: object, exc: Exception | None) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
