"""Logging to stderr in a form journald understands.

Under systemd (``JOURNAL_STREAM`` set) each line starts with a ``<N>`` syslog
priority and carries no timestamp, since the journal adds its own; elsewhere
lines get a timestamp and a level name.
"""

from __future__ import annotations

import logging
import os
import sys
import time

__all__ = ["setup"]

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # One journal entry per line: keep continuation lines at the same priority.
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


class _TimeFormatter(logging.Formatter):
    """``asctime`` as the stdlib writes it, its strftime done once a second, not once a line."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._text},{int(record.msecs):03d}"


def setup(level: str = "info") -> None:
    """Send the ``ccxd`` loggers to stderr at ``level``."""
    # The lines name neither thread, process nor caller; finding them out was most of
    # the cost of a record (the logging HOWTO's "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(_TimeFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("ccxd")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def set_level(level: str) -> None:
    """Change the threshold (on reload)."""
    logging.getLogger("ccxd").setLevel(level.upper())
