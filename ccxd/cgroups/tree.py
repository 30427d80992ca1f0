"""A job's processes as its process tree plus everything in its cgroup."""

from __future__ import annotations

import logging

from ccxd.cgroups.base import CgroupError, JobCgroup
from ccxd.cgroups.fs import live
from ccxd.proc.tree import ProcessTree, ProcInfo

__all__ = ["GroupTree"]

log = logging.getLogger("ccxd.cgroups")


class GroupTree(ProcessTree):
    """:class:`ProcessTree` whose members include the cgroup's and whose kill is the cgroup's.

    The tree sweep stays underneath: if the cgroup fails mid-way (removed by
    someone, a kernel error) the job is still found and killed the old way.
    """

    def __init__(
        self,
        job_id: str,
        leader: int,
        pgid: int,
        group: JobCgroup,
        reaper: int | None = None,
        reaper_start: int | None = None,
    ) -> None:
        super().__init__(job_id, leader, pgid, reaper, reaper_start)
        self.group = group
        self._failed = False

    def _fail(self, exc: CgroupError) -> None:
        if not self._failed:
            self._failed = True
            log.warning("job %s: cgroup failed (%s); using the process tree alone", self.job_id, exc)

    def members(self, procs: dict[int, ProcInfo] | None = None) -> dict[int, ProcInfo]:
        """Tree members plus every process in the cgroup."""
        found = super().members(procs)
        if not self._failed:
            try:
                extra = [pid for pid in self.group.pids() if pid not in found]
            except CgroupError as exc:
                self._fail(exc)
            else:
                found.update(live(extra))
        return found

    async def kill(self) -> None:
        """SIGKILL everything in the group until it is empty."""
        if not self._failed:
            try:
                await self.group.kill()
            except CgroupError as exc:
                self._fail(exc)
        await super().kill()
