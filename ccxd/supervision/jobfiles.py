"""The files the supervisor keeps for its jobs, written and removed in order, off the loop.

A job's admission record (``jobfile.py``) is written before its process is
spawned and again when it ends; a job under a shim also has an adoption record
and an exit file (``shimjob.py``); a job with output has a spool.  They all
change through two :class:`~ccxd.supervision.diskqueue.DiskQueue` queues, so a
daemon killed at any moment leaves a state the next one can recover from.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from ccxd import paths
from ccxd.jobs import jobfile
from ccxd.output.spool import Spool, remove_spool, spooled_jobs
from ccxd.protocol import JobInfo
from ccxd.supervision import shimjob
from ccxd.supervision.diskqueue import DiskQueue

__all__ = ["JobFiles"]

log = logging.getLogger("ccxd.supervision")


class JobFiles:
    """Job files, adoption records, exit files and spools of one daemon's jobs."""

    def __init__(self, jobs_dir: Path, spool_dir: Path) -> None:
        self.jobs_dir = jobs_dir
        """Job files and exit statuses: runtime state, best on tmpfs (``paths.jobs_dir``)."""
        self.spool_dir = spool_dir
        self.record_writes = DiskQueue("ccxd-jobs", inline=paths.in_memory(jobs_dir))
        """Job files and adoption records are written and removed here, in order."""
        self.spool_removals = DiskQueue()
        """Retired jobs' spools are removed here, in order."""
        self._admissions: dict[str, asyncio.Future[None]] = {}

    # -- job files ------------------------------------------------------------

    def save(self, info: JobInfo) -> asyncio.Future[None]:
        """Write ``info`` as its job's file; the future is done once it is written (or failed).

        Before anything runs, and again when it ends: the store is written behind,
        and a daemon killed in between must not lose the job or its outcome.
        """
        directory = self.jobs_dir

        def save() -> None:
            try:
                jobfile.save(directory, info)
            except OSError as exc:
                log.warning("job %s: cannot write its job file (%s); a crash now could lose it", info.id, exc)

        return self.record_writes.submit(save)

    def save_admitted(self, info: JobInfo) -> None:
        """Write an admitted job's file; :meth:`admission` is the write until the job starts."""
        self._admissions[info.id] = self.save(info)

    def admission(self, job_id: str) -> asyncio.Future[None] | None:
        """The write of the admitted job's file, while nothing awaited it for the job's start."""
        return self._admissions.get(job_id)

    def take_admission(self, job_id: str) -> asyncio.Future[None] | None:
        """:meth:`admission`, forgotten: the job starts (no process before its job file), or is gone."""
        return self._admissions.pop(job_id, None)

    # -- jobs under a shim ----------------------------------------------------

    def exit_path(self, job_id: str) -> str:
        """Where the shim of ``job_id`` writes its exit status."""
        return shimjob.exit_path(self.jobs_dir, job_id)

    def save_adoption_record(self, record: shimjob.AdoptRecord) -> asyncio.Future[None]:
        """Write what a later daemon needs to adopt the job; done once written (or failed)."""
        return self.record_writes.submit(functools.partial(_save_record, self.jobs_dir, record))

    def remove_shim_files_later(self, job_id: str) -> None:
        """Queue the removal of the adoption record and exit file (after the writes before it)."""
        self.record_writes.later(functools.partial(shimjob.remove_files, self.jobs_dir, job_id))

    def remove_shim_files(self, job_id: str) -> None:
        """Remove the adoption record and exit file now (a job that cannot be adopted)."""
        shimjob.remove_files(self.jobs_dir, job_id)

    # -- retiring -------------------------------------------------------------

    def remove_later(self, job_id: str, spool: Spool | None) -> None:
        """Queue the removal of a forgotten job's spool and job file.

        Two queues: the job file may go before the spool, and a crash in between
        leaves a spool nothing needs, which :meth:`sweep_spools` removes at the next start.
        A job that wrote nothing has no spool: removing it would cost a thread hand-off.
        """
        if spool is not None and spool.created:
            self.spool_removals.later(functools.partial(_remove_spool_files, spool))
        self.record_writes.later(functools.partial(jobfile.remove, self.jobs_dir, job_id))

    def sweep_spools(self, known: set[str]) -> int:
        """Delete the spools a previous run left that nothing can need any more; how many.

        A spool is still needed by a job in ``known``, a job whose record may not
        have reached the store (its job file is still there) or one a shim may still
        write to (its adoption record is still there).
        """
        try:
            spooled = spooled_jobs(self.spool_dir)
            needed = set(known)
            needed.update(info.id for info in jobfile.load_all(self.jobs_dir))
            needed.update(rec.info.id for rec in shimjob.load_records(self.jobs_dir))
        except OSError as exc:
            log.warning("cannot sweep the spool directory: %s", exc)
            return 0
        orphans = spooled - needed
        for job_id in orphans:
            remove_spool(self.spool_dir, job_id)
        return len(orphans)

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued change is on disk; False if some are still queued after ``timeout``."""
        spools = await self.spool_removals.flush(timeout=timeout)
        return spools and await self.record_writes.flush(timeout=timeout)


def _save_record(directory: Path, record: shimjob.AdoptRecord) -> None:
    try:
        shimjob.save_record(directory, record)
    except OSError as exc:
        log.warning("job %s: cannot save its adoption record (%s)", record.info.id, exc)


def _remove_spool_files(spool: Spool) -> None:
    """Delete a retired job's spool (the disk queue runs this)."""
    for path in (spool.data_path, spool.index_path):
        path.unlink(missing_ok=True)
