"""Telling systemd how the daemon is (sd_notify), and pinging its watchdog."""

from __future__ import annotations

import asyncio
import logging
import os
import time

__all__ = ["Notifier"]

log = logging.getLogger("ccxd.notify")


class Notifier:
    """Sends READY/STATUS/RELOADING/STOPPING/WATCHDOG when ``NOTIFY_SOCKET`` is set."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = None
        if self.enabled:
            import sdnotify  # only needed under systemd

            self._notifier = sdnotify.SystemdNotifier()
        self._last_status = ""

    def send(self, *fields: str) -> None:
        """Send ``KEY=VALUE`` fields in one datagram."""
        if self._notifier is not None:
            self._notifier.notify("\n".join(fields))

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
