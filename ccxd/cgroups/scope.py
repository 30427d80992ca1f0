"""A systemd scope beside the daemon's unit that holds the job cgroups (cgroup v2).

Why not below the unit.  v2 forbids processes in a cgroup that enables
controllers for its children, and systemd before 254 (no ``DelegateSubgroup=``)
starts a unit's main process in the unit's own cgroup.  With job groups below
``ccxd.service`` that cgroup must enable controllers, so once jobs outlive a
daemon (``KillMode=process``: a crash, a restart, an upgrade), systemd cannot
start the next one ("Failed to attach to cgroup … Device or resource busy").
So job groups live in a scope of their own, the way container engines put
containers in ``docker-<id>.scope``::

    app.slice/
    ├── ccxd.service/                 ccxd, its redis-server, the job shims (a leaf)
    └── ccxd-jobs-<instance>.scope/   Delegate=yes; subtree_control: +memory +cpu +pids
        ├── holder/                   ``sleep infinity``: keeps the scope while no job runs
        └── job-0123abcd/ …

The scope is made once with ``systemd-run --scope`` (through the manager's
private socket, no D-Bus daemon needed) and outlives the daemon while jobs do;
the next daemon finds it by name and uses it again.  A job process joins its
group across the two units: the writer needs write access to the common
ancestor's ``cgroup.procs``, which a user's own slice gives it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time

from ccxd.cgroups import fs
from ccxd.cgroups.base import CgroupError

__all__ = ["JobsScope", "scope_location"]

log = logging.getLogger("ccxd.cgroups")

_WAIT = 5.0
"""How long systemd may take to make the scope."""


def scope_location(mount: str, own: str, instance: str) -> tuple[str, str, str] | None:
    """``(scope unit, its slice, its cgroup dir)`` beside our unit, or None when not in a service.

    ``own`` is the daemon's cgroup path (``/user.slice/…/app.slice/ccxd.service``).
    """
    parts = [p for p in own.split("/") if p]
    if len(parts) < 2 or not parts[-1].endswith(".service") or not parts[-2].endswith(".slice"):
        return None
    unit = f"ccxd-jobs-{instance}.scope"
    return unit, parts[-2], os.path.join(mount, *parts[:-1], unit)


class JobsScope:
    """The scope's cgroup dir, made (or found) on construction; raises :class:`CgroupError`."""

    def __init__(self, unit: str, slice_: str, path: str, user: bool) -> None:
        self.unit = unit
        self.path = path
        self.holder_dir = os.path.join(path, "holder")
        self.holder_pid: int | None = None
        """The holder, when this daemon started it (so it is this daemon's child)."""
        if not _pids(self.holder_dir):
            self._make(slice_, user)

    def _make(self, slice_: str, user: bool) -> None:
        systemd_run = shutil.which("systemd-run")
        if systemd_run is None:
            raise CgroupError("no systemd-run to make a scope for job cgroups")
        argv = [
            systemd_run,
            *(["--user"] if user else []),
            "--scope",
            "--quiet",
            "--collect",
            f"--unit={self.unit}",
            f"--slice={slice_}",
            "--property=Delegate=yes",
            "--",
            "sleep",
            "infinity",
        ]
        # Its own session: a signal to the daemon's process group must not end the scope.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        deadline = time.monotonic() + _WAIT
        while proc.pid not in _pids(self.path):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                with contextlib.suppress(OSError):
                    proc.kill()
                raise CgroupError(f"systemd-run could not make {self.unit}: {err or 'timed out'}")
            time.sleep(0.01)  # polled: no event to wait on; once per daemon start
        if proc.stderr is not None:
            proc.stderr.close()
        # v2 allows no process beside child groups with controllers: the holder moves to a leaf.
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.holder_dir)
        fs.write(f"{self.holder_dir}/cgroup.procs", str(proc.pid))
        proc.returncode = 0  # the daemon's reaper collects it; Popen must not wait for it
        self.holder_pid = proc.pid
        log.info("job cgroups in %s (%s)", self.unit, self.path)

    def release(self) -> None:
        """End the scope (its holder) if no job group is left in it; systemd removes it."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return
        if any(os.path.isdir(os.path.join(self.path, n)) and n != "holder" for n in names):
            return  # jobs left running for the next daemon
        for pid in _pids(self.holder_dir):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)


def _pids(directory: str) -> list[int]:
    """The processes in the cgroup ``directory``; none when it is not there (yet)."""
    try:
        return fs.read_pids(f"{directory}/cgroup.procs")
    except CgroupError:
        return []
