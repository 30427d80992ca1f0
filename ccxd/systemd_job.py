"""Whether systemd is restarting ccxd's unit, or stopping it.

SIGTERM looks the same for ``systemctl stop`` and ``systemctl restart``.  A
restart should leave jobs running for the daemon that follows (``on_restart``),
a stop should end them (``on_stop``).  While it stops the unit, systemd holds a
job of type ``restart`` or ``stop`` for it, which ``systemctl list-jobs`` shows;
the unit's name and manager (user or system) come from ``/proc/self/cgroup``.
The parsing is pure; :func:`unit_job_type` runs ``systemctl`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil

__all__ = ["parse_jobs", "unit_from_cgroup", "unit_job_type"]

log = logging.getLogger("ccxd.daemon")


def unit_from_cgroup(text: str) -> tuple[str, bool] | None:
    """``(unit, under a user manager)`` from ``/proc/self/cgroup``; None outside a service.

    The unit is the innermost ``*.service`` on the path (ccxd may have moved
    itself into a child group below it, as ``Delegate=yes`` allows).
    """
    path = None
    for line in text.splitlines():
        _, controllers, where = [*line.split(":", 2), "", ""][:3]
        if controllers in ("", "name=systemd"):
            path = where
            if controllers == "":
                break  # the unified hierarchy is authoritative
    if not path:
        return None
    parts = [p for p in path.split("/") if p]
    user = any(p.startswith("user@") and p.endswith(".service") for p in parts)
    units = [p for p in parts if p.endswith(".service") and not p.startswith("user@")]
    return (units[-1], user) if units else None


def parse_jobs(text: str, unit: str) -> str | None:
    """The type of the job systemd runs for ``unit``, from ``systemctl list-jobs --plain --no-legend``."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == unit:
            return words[2]
    return None


async def unit_job_type(timeout: float = 2.0) -> str | None:
    """``restart``, ``stop`` … for this daemon's unit now; None when unknown or not under systemd."""
    if not os.environ.get("INVOCATION_ID"):
        return None  # not started by systemd
    systemctl = shutil.which("systemctl")
    try:
        with open("/proc/self/cgroup") as f:
            found = unit_from_cgroup(f.read())
    except OSError:
        found = None
    if systemctl is None or found is None:
        return None
    unit, user = found
    argv = [systemctl, *(["--user"] if user else []), "list-jobs", "--plain", "--no-legend", unit]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        log.warning("cannot ask systemd whether this is a restart: %s", exc)
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        log.warning("systemctl list-jobs did not answer in %gs; treating this as a stop", timeout)
        return None
    return parse_jobs(out.decode(errors="replace"), unit)
