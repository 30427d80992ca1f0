"""The bridge from supervision to the store: records jobs, output and durations.

The supervisor calls the synchronous hooks (:meth:`Recorder.job_changed`,
:meth:`Recorder.output`, :meth:`Recorder.job_finished`); they only queue writes
on the :class:`~ccxd.store.writer.StoreWriter`, so a job never waits for Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ccxd.history.estimate import Estimate, Sample, estimate
from ccxd.history.signature import signature
from ccxd.jobs import jobfile
from ccxd.jobs.lifecycle import LifecycleObserver
from ccxd.output.log import Chunk
from ccxd.output.spool import read_spool
from ccxd.proc.tree import ProcInfo, scan_processes, send_checked
from ccxd.protocol import JobInfo, JobReason, JobState
from ccxd.store.base import Store, StoreUnavailable
from ccxd.store.ops import AppendOutput, ClaudeState, RecordDuration, SaveClaudeState, SaveJob
from ccxd.store.writer import StoreWriter

if TYPE_CHECKING:
    from ccxd.jobs.job import Job

__all__ = ["EstimateSettings", "Recorder"]

log = logging.getLogger("ccxd.history")

_CACHE_TTL = 300.0
_SAMPLES = 100


class EstimateSettings:
    """The knobs of timeout estimation (from the config)."""

    def __init__(
        self,
        *,
        enabled: bool,
        default: float | None,
        k: float,
        min_samples: int,
        bootstrap: float | None,
        minimum: float = 0.0,
        floor: float = 0.0,
        silence: float | None = None,
    ) -> None:
        self.enabled = enabled
        self.minimum = minimum
        self.floor = floor
        self.silence = silence
        """Set: estimates are guards (ended only when silent this long, past ``floor``)."""
        self.default = default
        self.k = k
        self.min_samples = min_samples
        self.bootstrap = bootstrap


class Recorder(LifecycleObserver):
    """Persists what the supervisor does: it hears every job's record and output (lifecycle.py)."""

    def __init__(
        self,
        store: Store,
        writer: StoreWriter,
        settings: Callable[[], EstimateSettings],
        output_limit: int | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.settings = settings
        self.output_limit = output_limit
        """Output the store keeps per job (``store_output_max_bytes``); later chunks are not queued."""
        self._samples: dict[str, tuple[float, list[Sample]]] = {}
        self.recovered: list[str] = []
        self.fleet_epochs: dict[str, int] = {}
        """Fleet jobs this node claimed → the epoch of the claim: their writes carry it (fenced)."""
        """Jobs :meth:`recover` saved from job files or marked lost, until :meth:`forget_recovered`."""

    # -- what the supervisor's lifecycle tells it -----------------------------

    def job_recorded(self, job: Job, info: JobInfo, *, outcome: bool) -> None:
        """Save the record; learn the duration of a job that just ended."""
        if outcome:
            self.job_finished(info)
        else:
            self.job_changed(info)

    def job_output(self, job: Job, chunk: Chunk) -> None:
        """Queue the chunk for the store."""
        self.output(job.id, chunk)

    def job_changed(self, info: JobInfo) -> None:
        """A job was admitted or changed state."""
        self.writer.submit(SaveJob(info, self.fleet_epochs.get(info.id, 0)))

    def output(self, job_id: str, chunk: Chunk) -> None:
        """A job produced a chunk of output."""
        if self.output_limit is not None and chunk.end > self.output_limit:
            # The store would drop it anyway; queueing it would only make a long
            # stream outrun the store and spill to the journal for nothing.
            return
        epoch = self.fleet_epochs.get(job_id, 0)
        self.writer.submit(AppendOutput(job_id, chunk.seq, chunk.stream, chunk.offset, chunk.data, epoch))

    def job_finished(self, info: JobInfo) -> None:
        """A job finished: save it and learn its duration."""
        self.writer.submit(SaveJob(info, self.fleet_epochs.get(info.id, 0)))
        if info.duration is None or info.reason not in (
            JobReason.EXITED,
            JobReason.TIMEOUT,
            JobReason.IDLE_TIMEOUT,
        ):
            return
        sig = signature(info.command)
        ok = info.reason is JobReason.EXITED and info.exit_code == 0
        # A deadline hid how long the run would have taken: "at least this long".  A job an
        # estimate's guard ended had gone silent (hung), which says nothing of its length.
        censored = info.reason is JobReason.TIMEOUT and info.timeout_silence is None
        self.writer.submit(
            RecordDuration(sig, info.duration, ok, censored, info.finished_at or time.time(), info.id)
        )
        cached = self._samples.get(sig)
        if cached is not None:
            cached[1].insert(0, Sample(info.duration, ok, censored))
            del cached[1][_SAMPLES:]

    def claude_state(self, state: ClaudeState) -> None:
        """Keep the Claude retry state (usage-limit block, waiting attempts) across restarts."""
        self.writer.submit(SaveClaudeState(state))

    # -- timeout estimates ----------------------------------------------------

    async def timeout_for(self, command: str | list[str]) -> Estimate:
        """The timeout for a job that set none, and why."""
        s = self.settings()
        if not s.enabled:
            return Estimate(s.default, "default_timeout" if s.default is not None else "none")
        samples = await self._samples_for(signature(command))
        return estimate(
            samples,
            default=s.default,
            k=s.k,
            min_samples=s.min_samples,
            bootstrap=s.bootstrap,
            minimum=s.minimum,
            floor=s.floor,
            silence=s.silence,
        )

    async def _samples_for(self, sig: str) -> list[Sample]:
        now = time.monotonic()
        cached = self._samples.get(sig)
        if cached is not None and (now - cached[0] < _CACHE_TTL or self.writer.degraded):
            return cached[1]
        if self.writer.degraded:
            return []  # never make a job wait on a store that is known to be down
        try:
            runs = await asyncio.wait_for(self.store.durations(sig, _SAMPLES), 2.0)
        except (StoreUnavailable, TimeoutError):
            return cached[1] if cached is not None else []
        samples = [Sample(r.duration, r.ok, r.censored) for r in runs]
        self._samples[sig] = (now, samples)
        if len(self._samples) > 10_000:
            self._samples.pop(next(iter(self._samples)))
        return samples

    # -- crash recovery -------------------------------------------------------

    async def import_spool(self, job_id: str, spool_dir: Path) -> tuple[int, list[int], int]:
        """Queue the output a previous daemon spooled but did not store.

        Returns the bytes imported, the spool's bytes per stream and the number
        of chunks read.  Call it before the job appends new output (the store
        takes chunks in order only) and let the job take in output after that
        many chunks: a shim may still be writing.
        """
        try:
            stored_end = await self.store.output_end(job_id)
        except StoreUnavailable:
            stored_end = 0  # replays are idempotent: chunks already stored are refused
        imported = 0
        stream_bytes = [0, 0]
        seq = 0
        for seq, (offset, stream, data) in enumerate(read_spool(spool_dir, job_id), 1):
            stream_bytes[stream] += len(data)
            if offset + len(data) > stored_end:
                self.writer.submit(AppendOutput(job_id, seq - 1, stream, offset, data))
                imported += len(data)
        return imported, stream_bytes, seq

    async def recover(
        self, spool_dir: Path, taken_over: Collection[str] = (), jobs_dir: Path | None = None
    ) -> list[JobInfo]:
        """Mark jobs a previous daemon left unfinished as ``lost``.

        Job files are read from ``jobs_dir`` (default: ``spool_dir``).

        Their leftover processes are killed (a job nobody supervises must not
        run on), and output that reached the spool but not the store is saved.
        Only jobs with a job file (the private runtime directory) have processes
        killed, and a job file that says a job ran still has its leftovers killed
        when the store calls it finished: the store alone could be whoever else
        writes to it.
        Jobs in ``taken_over`` are left alone: Claude retry attempts already queued
        again, and jobs this daemon adopted (still running under their shims).
        """
        jobs_dir = jobs_dir or spool_dir
        try:
            unfinished = await self.store.unfinished_jobs()
            known = {j.id for j in unfinished}
            on_disk: set[str] = set()
            settled: set[str] = set()  # finished says the store, not the job file
            for admitted in jobfile.load_all(jobs_dir):
                if admitted.id in taken_over:
                    continue  # adopted or queued again: its job file is in use
                on_disk.add(admitted.id)
                stored = await self.store.get_job(admitted.id)
                if stored is not None and stored.state is JobState.FINISHED:
                    jobfile.remove(jobs_dir, admitted.id)
                    if admitted.state is not JobState.FINISHED:
                        settled.add(admitted.id)
                elif admitted.state is JobState.FINISHED:  # its outcome never reached the store
                    self._import_spool(spool_dir, admitted, await self.store.output_end(admitted.id))
                    self.writer.submit(SaveJob(admitted))
                    self.recovered.append(admitted.id)
                    unfinished = [j for j in unfinished if j.id != admitted.id]
                    log.warning("job %s: its final record was saved from the job file", admitted.id)
                elif stored is None and admitted.id not in known:  # killed before any record landed
                    unfinished.append(admitted)
        except StoreUnavailable as exc:
            log.error("cannot look for lost jobs: %s", exc)
            return []
        unfinished = [j for j in unfinished if j.id not in taken_over]
        if not unfinished and not settled:
            return []
        killed = _kill_marked({j.id for j in unfinished if j.id in on_disk} | settled)
        for job_id in sorted(settled & killed.keys()):
            n = killed[job_id]
            log.warning("job %s: recorded as finished, yet %d leftover process(es) ran: killed", job_id, n)
        lost = []
        for info in unfinished:
            imported, stream_bytes = self._import_spool(spool_dir, info, await self.store.output_end(info.id))
            note = f"ccxd stopped while the job was {info.state.value}"
            if info.id in killed:
                note += f"; {killed[info.id]} leftover process(es) were killed"
            now = time.time()
            info.state = JobState.FINISHED
            info.reason = JobReason.LOST
            info.error = note
            info.finished_at = now
            if info.started_at is not None:  # it ran until this daemon killed what was left
                info.duration = round(max(0.0, now - info.started_at), 3)
            info.queue_position = None
            if stream_bytes != [0, 0]:
                info.stdout_bytes, info.stderr_bytes = stream_bytes
                info.output_bytes = sum(stream_bytes)
            self.writer.submit(SaveJob(info))
            self.recovered.append(info.id)
            lost.append(info)
            log.warning(
                "job %s recorded as lost (%s; %d output bytes kept, %d of them recovered from its spool)",
                info.id,
                note,
                info.output_bytes,
                imported,
            )
        return lost

    def _import_spool(self, spool_dir: Path, info: JobInfo, stored_end: int) -> tuple[int, list[int]]:
        """Queue the spooled output the store lacks; (bytes imported, bytes per stream)."""
        imported = 0
        stream_bytes = [0, 0]
        for seq, (offset, stream, data) in enumerate(read_spool(spool_dir, info.id)):
            stream_bytes[stream] += len(data)
            if offset + len(data) > stored_end:
                self.writer.submit(AppendOutput(info.id, seq, stream, offset, data))
                imported += len(data)
        return imported, stream_bytes

    def forget_recovered(self, jobs_dir: Path) -> None:
        """Drop the job files of recovered jobs, once their records are in the store."""
        for job_id in self.recovered:
            jobfile.remove(jobs_dir, job_id)
        self.recovered.clear()

    # -- retention ------------------------------------------------------------

    async def retention(
        self,
        interval: float,
        max_age: Callable[[], float | None],
        max_jobs: Callable[[], int | None],
        max_signatures: Callable[[], int | None] = lambda: None,
        also: Iterable[Callable[[], Awaitable[object]]] = (),
    ) -> None:
        """Prune old history every ``interval`` seconds, in small batches; then run each of ``also``."""
        while True:
            try:
                await self.retain(max_age(), max_jobs(), max_signatures())
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("retention failed")
            for extra in also:
                try:
                    await extra()
                except Exception:
                    log.exception("retention failed")
            await asyncio.sleep(interval)

    async def retain(self, max_age: float | None, max_jobs: int | None, max_signatures: int | None) -> int:
        """One round of retention: old jobs, then signatures past ``max_signatures``; jobs removed."""
        removed = await self.store.prune(max_age, max_jobs)
        if removed:
            log.info("retention removed %d old jobs", removed)
        forgotten = await self.store.prune_signatures(max_signatures) if max_signatures is not None else 0
        if forgotten:
            log.info("retention forgot %d command signatures seen longest ago", forgotten)
        return removed


def _kill_marked(job_ids: Iterable[str]) -> dict[str, int]:
    """SIGKILL every process whose environment names one of ``job_ids``."""
    wanted = {f"CCXD_JOB_ID={j}".encode(): j for j in job_ids}
    found: dict[str, list[ProcInfo]] = {}
    me = os.getpid()
    uid = os.getuid()
    for info in scan_processes().values():
        if info.pid == me:
            continue
        try:
            if uid != 0 and os.stat(f"/proc/{info.pid}").st_uid != uid:
                continue
            with open(f"/proc/{info.pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        for entry in env:
            job = wanted.get(entry)
            if job is not None:
                found.setdefault(job, []).append(info)
                break
    for procs in found.values():
        for p in procs:
            send_checked(p, signal.SIGKILL)
    return {j: len(p) for j, p in found.items()}
