"""The daemon's file-descriptor limit: raised for itself, given back to what it starts.

A daemon that serves thousands of clients and jobs must not stop at a login
shell's soft limit (often 1,024), so ccxd raises its soft ``RLIMIT_NOFILE`` to
the hard limit at start (issue 19).  What it starts gets the limit ccxd was
started with back, as systemd does for its services: a program that closes
every descriptor up to its limit, or uses ``select()``, must not notice ccxd.
Processes are started without ``preexec_fn`` (see ``supervision/spawn.py``),
so the limit is set on the new process just after it started: exact for the
shim server, which forks nothing before it is asked, and for the shims it
forks; for a job started directly it may come a moment after the job began.
"""

from __future__ import annotations

import contextlib
import logging
import resource
from pathlib import Path

__all__ = ["give_back", "raise_soft_limit"]

log = logging.getLogger("ccxd.daemon")

_inherited: tuple[int, int] | None = None  # (soft, hard) ccxd was started with, once raised


def raise_soft_limit() -> int:
    """Raise the soft limit on open files to the hard one (logged); the limit now in force."""
    global _inherited
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard
    if hard == resource.RLIM_INFINITY:
        try:  # the kernel's ceiling for one process
            want = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            want = soft
    if want <= soft:
        log.info("file-descriptor limit: %d", soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the file-descriptor limit from %d to %d: %s", soft, want, exc)
        return soft
    _inherited = (soft, hard)
    log.info("file-descriptor limit: %d (raised from %d; processes ccxd starts get %d)", want, soft, soft)
    return want


def give_back(pid: int) -> None:
    """Give process ``pid`` (just started by ccxd) the limit ccxd itself was started with."""
    if _inherited is None:
        return
    with contextlib.suppress(OSError):  # it may be gone already
        resource.prlimit(pid, resource.RLIMIT_NOFILE, _inherited)
