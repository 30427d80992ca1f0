"""Telling systemd how the daemon is (sd_notify), and pinging its watchdog.

The notification socket is a datagram socket whose receiver may be slow or stalled
(a busy manager, a test harness that reads only what it waits for): once the
receiver's queue is full a blocking send would freeze the whole event loop.  So
sends never block: what cannot go now waits in a small queue, flushed when the
socket is writable again, with superseded ``STATUS=`` and ``WATCHDOG=1`` messages
coalesced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import Any

__all__ = ["Notifier"]

log = logging.getLogger("ccxd.notify")

_MAX_PENDING = 16


def _droppable(message: str) -> bool:
    return message == "WATCHDOG=1" or ("\n" not in message and message.startswith("STATUS="))


def _supersedes(new: str, old: str) -> bool:
    """A queued ``old`` says nothing ``new`` does not say more recently."""
    if new == old == "WATCHDOG=1":
        return True
    return _droppable(new) and _droppable(old) and new.startswith("STATUS=") and old.startswith("STATUS=")


class Notifier:
    """Sends READY/STATUS/RELOADING/STOPPING/WATCHDOG when ``NOTIFY_SOCKET`` is set."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier: Any = None
        self._pending: deque[str] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        if self.enabled:
            import sdnotify  # only needed under systemd

            try:
                self._notifier = sdnotify.SystemdNotifier(debug=True)  # debug: raise, not swallow
                self._notifier.socket.setblocking(False)
            except OSError as exc:
                log.warning("cannot reach NOTIFY_SOCKET (%s); not telling systemd anything", exc)
                self._notifier = None
        self._last_status = ""

    @property
    def pending(self) -> int:
        """Messages waiting for the receiver to make room."""
        return len(self._pending)

    def send(self, *fields: str) -> None:
        """Send ``KEY=VALUE`` fields in one datagram, without ever blocking."""
        if self._notifier is None:
            return
        message = "\n".join(fields)
        if self._pending:
            self._enqueue(message)  # keep the order: behind what already waits
            return
        try:
            self._notifier.notify(message)
        except BlockingIOError:
            self._enqueue(message)
            self._wait_writable()
        except OSError as exc:
            log.debug("sd_notify %r not sent: %s", message, exc)

    def _enqueue(self, message: str) -> None:
        last = self._pending[-1] if self._pending else None
        if last is not None and _supersedes(message, last):
            self._pending[-1] = message
            return
        self._pending.append(message)
        if len(self._pending) > _MAX_PENDING:
            # Only STATUS and WATCHDOG can pile up this far; drop the oldest of them.
            for i, old in enumerate(self._pending):
                if _droppable(old):
                    del self._pending[i]
                    break

    def _wait_writable(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush(timeout=1.0)  # no loop to wait with (start-up or exit)
            return
        if self._loop is None:
            log.warning("the service manager is not reading notifications; queueing them")
            self._loop = loop
            loop.add_writer(self._notifier.socket.fileno(), self._flush_ready)

    def _flush_ready(self) -> None:
        while self._pending:
            try:
                self._notifier.notify(self._pending[0])
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("sd_notify: %s; dropping %d queued messages", exc, len(self._pending))
                self._pending.clear()
            else:
                self._pending.popleft()
        if self._loop is not None:
            self._loop.remove_writer(self._notifier.socket.fileno())
            self._loop = None

    def flush(self, timeout: float) -> None:
        """Send what is queued, waiting at most ``timeout`` seconds (for the way out)."""
        if self._notifier is None or not self._pending:
            return
        if self._loop is not None:
            self._loop.remove_writer(self._notifier.socket.fileno())
            self._loop = None
        sock = self._notifier.socket
        sock.settimeout(timeout)
        try:
            while self._pending:
                sock.send(self._pending[0].encode("latin-1"))
                self._pending.popleft()
        except OSError as exc:  # includes the timeout
            log.warning("sd_notify: %d messages not delivered (%s)", len(self._pending), exc)
            self._pending.clear()
        finally:
            sock.setblocking(False)

    def ready(self, status: str) -> None:
        """The daemon accepts work."""
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        """A one-line status a person can read (sent only when it changes)."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def reloading(self) -> None:
        """A config reload begins (READY=1 follows when done)."""
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """The daemon is on its way out."""
        self.send("STOPPING=1", "STATUS=stopping")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings, or None when systemd wants none."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not self.enabled or not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return max(int(usec) / 2_000_000, 0.01)
        except ValueError:
            return None

    async def watchdog(self, interval: float) -> None:
        """Ping from the event loop itself, so a stalled loop stops the pings."""
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
