"""The none backend: no cgroups; the job's process tree is sampled from /proc.

Memory is enforced by the monitor (sum of resident memory over the tree, checked
every sample; past the limit the tree is killed and the job ends as ``oom``), so
a fast allocation can overshoot it between samples.  CPU quota, pids and IO
weight cannot be enforced per job without cgroups (RLIMIT_NPROC counts every
process of the user, RLIMIT_CPU is total seconds, not a rate), so they are
reported as unenforced.
"""

from __future__ import annotations

from ccxd.cgroups.base import Backend, JobCgroup, RawSample
from ccxd.cgroups.procfs import proc_usage
from ccxd.proc.tree import ProcessTree
from ccxd.protocol import Limits

__all__ = ["NoneBackend", "TreeGroup"]


class TreeGroup(JobCgroup):
    """A job's process tree standing in for a cgroup."""

    def __init__(self, job_id: str, limits: Limits) -> None:
        super().__init__(job_id, limits)
        self.tree: ProcessTree | None = None
        self.unenforced = [
            name for name in ("cpus", "pids", "io_weight") if getattr(limits, name) is not None
        ]
        self.heuristic_oom_kills = 0
        """Set by the monitor when it killed the tree for exceeding the memory limit."""

    def join_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new process joins."""
        return []

    def attach(self, pid: int) -> None:
        """Move ``pid`` into the group."""
        self.tree = ProcessTree(self.job_id, pid, pid)

    def pids(self) -> list[int]:
        """Processes in the group now."""
        return list(self.tree.members()) if self.tree is not None else []

    async def kill(self) -> None:
        """SIGKILL everything in the group until it is empty."""
        if self.tree is not None:
            await self.tree.kill()

    def sample(self) -> RawSample:
        """Read the group's counters."""
        u = proc_usage(self.pids())
        return RawSample(
            cpu_seconds=u.cpu_seconds,
            memory=u.memory,
            pids=u.threads,
            io_read_bytes=u.io_read_bytes,
            io_write_bytes=u.io_write_bytes,
        )

    def oom_kills(self) -> int:
        """OOM kills the kernel counted for the group."""
        return self.heuristic_oom_kills

    def remove(self) -> bool:
        """Remove the group if empty."""
        return True


class NoneBackend(Backend):
    """Process-tree sampling only."""

    name = "none"

    def __init__(self, why: str = "") -> None:
        self.description = "none (process-tree sampling; memory limit by sampling only)" + (
            f": {why}" if why else ""
        )

    def create(self, job_id: str, limits: Limits) -> JobCgroup:
        """Make the job's group with its limits."""
        return TreeGroup(job_id, limits)

    def open(self, job_id: str, path: str | None = None) -> JobCgroup | None:
        """Reopen a job's existing group (there are none)."""
        return None

    def leftovers(self) -> list[str]:
        """Job ids with a group under this daemon's parent."""
        return []
