"""How long finished jobs stay in memory, and their spools on disk.

The newest ``finished_jobs_kept`` finished jobs stay; past that, and past
``spool_max_total`` bytes of spools (oldest first, once the store has their
output), a job is forgotten: from then on the store answers for it.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from ccxd.config import Config

if TYPE_CHECKING:
    from ccxd.history.recorder import Recorder
    from ccxd.jobs.job import Job
    from ccxd.supervision.jobfiles import JobFiles

__all__ = ["Retention"]


class Retention:
    """Retires finished jobs and forgets the oldest of them."""

    def __init__(
        self, config: Config, jobs: dict[str, Job], files: JobFiles, recorder: Recorder | None
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.files = files
        self.recorder = recorder
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._spooled: dict[str, tuple[int, int]] = {}
        """Finished jobs with a spool, oldest first: its size and the store writer's mark."""
        self._spooled_bytes = 0

    def retire(self, job: Job) -> None:
        """``job`` finished and is recorded: keep it while the limits allow."""
        self.files.take_admission(job.id)  # a queued job that never ran
        self._finished[job.id] = None
        spool = job.log.spool
        if spool is not None and spool.created and self.recorder is not None:
            # Its writes are all submitted (it was recorded): once the store has this many, it has them.
            self._spooled[job.id] = (spool.size, self.recorder.writer.submitted)
            self._spooled_bytes += spool.size
        while len(self._finished) > self.config.finished_jobs_kept:
            old_id, _ = self._finished.popitem(last=False)
            self._forget(old_id)
        self._evict_spools()

    def _evict_spools(self) -> None:
        """Forget the oldest finished jobs, spools and all, past ``spool_max_total`` on disk.

        Only jobs whose output the store has: from then on it answers for them.
        """
        if self._spooled_bytes <= self.config.spool_max_total or self.recorder is None:
            return
        writer = self.recorder.writer
        for job_id, (_, mark) in list(self._spooled.items()):
            if self._spooled_bytes <= self.config.spool_max_total or not writer.has_stored(mark):
                break
            self._finished.pop(job_id, None)
            self._forget(job_id)

    def _forget(self, old_id: str) -> None:
        """Drop a finished job from memory and its spool and job file from disk."""
        size, _ = self._spooled.pop(old_id, (0, 0))
        self._spooled_bytes -= size
        old = self.jobs.pop(old_id, None)
        spool = old.log.spool if old is not None else None
        if spool is not None:
            spool.close()
        self.files.remove_later(old_id, spool)
