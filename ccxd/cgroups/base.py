"""The interface every resource backend implements (cgroup v2, cgroup v1, none).

A backend makes one :class:`JobCgroup` per job.  The supervisor (through
:class:`ccxd.cgroups.control.ResourceControl`) puts the job's first process in
it *before* the job can fork (:meth:`JobCgroup.wrap`), samples it, kills it as a
whole and removes it.  Anyone else who spawns jobs (a shim that outlives the
daemon, a test) uses the same calls: ``create`` → ``wrap`` or ``attach`` →
``sample``/``kill`` → ``remove``; a later daemon finds leftovers with
``leftovers`` and reopens one with ``open``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Collection

from ccxd.protocol import Limits

__all__ = ["Backend", "CgroupError", "JobCgroup", "RawSample", "job_dir_name", "job_id_of"]

JOB_PREFIX = "job-"


def job_dir_name(job_id: str) -> str:
    """The directory name of a job's cgroup."""
    return JOB_PREFIX + job_id


def job_id_of(name: str) -> str | None:
    """The job id a cgroup directory name belongs to, or None."""
    return name[len(JOB_PREFIX) :] if name.startswith(JOB_PREFIX) and len(name) > len(JOB_PREFIX) else None


class CgroupError(Exception):
    """A backend operation failed; the message names the file and the reason."""


@dataclasses.dataclass(slots=True)
class RawSample:
    """What a backend reads at one instant; :mod:`ccxd.cgroups.monitor` derives rates and peaks."""

    cpu_seconds: float
    memory: int
    pids: int
    memory_peak: int | None = None
    """The kernel's own high-water mark, when it keeps one."""
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    cpu_throttled: float | None = None
    psi_cpu: float | None = None
    psi_memory: float | None = None
    psi_io: float | None = None


class JobCgroup(abc.ABC):
    """One job's group of processes and its limits."""

    path: str | None
    """The main cgroup directory (None for the none backend)."""
    limits: Limits
    unenforced: list[str]
    """Names of limits this backend cannot enforce here (``memory``, ``cpus``, ``pids``, ``io_weight``)."""

    def __init__(self, job_id: str, limits: Limits) -> None:
        self.job_id = job_id
        self.limits = limits
        self.unenforced = []
        self.path = None
        self.ended = False
        """Set once the job ended, just before its final sample (``ResourceControl.verdict``)."""

    @abc.abstractmethod
    def join_files(self) -> list[str]:
        """``cgroup.procs`` files a process writes ``0`` to in order to join (empty: none)."""

    @abc.abstractmethod
    def attach(self, pid: int) -> None:
        """Move ``pid`` (and nothing it forked earlier) into the group."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Processes in the group now (may be empty for the none backend before ``attach``)."""

    @abc.abstractmethod
    async def kill(self) -> None:
        """SIGKILL every process of the group, for certain, and wait until it is empty."""

    @abc.abstractmethod
    def sample(self) -> RawSample:
        """Read the group's counters now."""

    @abc.abstractmethod
    def oom_kills(self) -> int:
        """How many processes the kernel killed for hitting the memory limit."""

    @abc.abstractmethod
    def remove(self) -> bool:
        """Remove the group if it is empty; True when nothing is left."""


class Backend(abc.ABC):
    """Makes job groups; one instance per daemon."""

    name: str
    """``v2``, ``v1`` or ``none``."""
    description: str
    """One line for ``ccxctl status``: backend, where, which limits it can enforce."""

    @abc.abstractmethod
    def create(self, job_id: str, limits: Limits) -> JobCgroup:
        """A new, empty group for ``job_id`` with ``limits`` applied; raises :class:`CgroupError`."""

    @abc.abstractmethod
    def open(self, job_id: str, path: str | None = None) -> JobCgroup | None:
        """The existing group of ``job_id`` (a daemon adopting a job), or None.

        ``path`` is the group the job's record names (v1 pools groups under other names).
        """

    @abc.abstractmethod
    def leftovers(self) -> list[str]:
        """Job ids whose groups exist (left by an earlier run of this daemon)."""

    def strays(self, in_use: Collection[str]) -> list[JobCgroup]:
        """Groups not named after a job that an earlier run left and no job uses (``in_use``: paths)."""
        return []

    def helper_pids(self) -> list[int]:
        """Children of the daemon the backend started and keeps (the reaper must expect them)."""
        return []

    def close_idle(self) -> None:  # noqa: B027 - optional: most backends keep nothing open
        """Close what the backend keeps open for running jobs, if no job runs (called when idle a while)."""

    def close(self) -> None:  # noqa: B027 - optional: most backends make nothing of their own
        """Remove what the backend made for itself, if it is empty (on daemon exit)."""
