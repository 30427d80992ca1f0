"""A store that keeps everything in memory (``store = "memory"``): nothing survives a restart."""

from __future__ import annotations

import collections
import time

from ccxd.protocol import CommandMetrics, HistoryParams, JobInfo, JobState, SessionDetail, SessionInfo
from ccxd.store.base import DurationSample, StoredChunk, WriteRefused
from ccxd.store.ops import (
    AppendOutput,
    ClaudeState,
    Op,
    RecordDuration,
    RecordMetric,
    SaveClaudeState,
    SaveJob,
)
from ccxd.store.query import Matcher

__all__ = ["MemoryStore"]


class MemoryStore:
    """In-process store, bounded by ``max_jobs`` records."""

    name = "memory"
    server = "memory"

    def __init__(self, node: str, max_jobs: int = 10_000, output_limit: int = 64 * 1024 * 1024) -> None:
        self.node = node
        self.max_jobs = max_jobs
        self.output_limit = output_limit
        self._jobs: collections.OrderedDict[str, JobInfo] = collections.OrderedDict()
        self._output: dict[str, list[StoredChunk]] = {}
        self._durations: dict[str, collections.deque[DurationSample]] = {}
        self._sessions: dict[str, SessionInfo] = {}
        self._claude: ClaudeState | None = None
        self._metrics: dict[str, CommandMetrics] = {}
        self._seen: dict[str, float] = {}  # signature → when a job of it last finished

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        """Always answers."""

    async def apply(self, ops: list[Op]) -> list[WriteRefused]:
        """Apply writes in order; any name is a plain dict key here, so none is refused."""
        for op in ops:
            if isinstance(op, SaveJob):
                self._save(op.info)
            elif isinstance(op, AppendOutput):
                chunks = self._output.setdefault(op.job_id, [])
                end = chunks[-1].offset + len(chunks[-1].data) if chunks else 0
                if op.offset >= end and op.offset + len(op.data) <= self.output_limit:
                    chunks.append(StoredChunk(op.stream, op.offset, op.data))
            elif isinstance(op, RecordDuration):
                runs = self._durations.setdefault(op.signature, collections.deque(maxlen=200))
                runs.appendleft(DurationSample(op.duration, op.ok, op.censored, op.at))
                self._seen[op.signature] = max(op.at, self._seen.get(op.signature, 0.0))
            elif isinstance(op, SaveClaudeState):
                self._claude = op.state
            elif isinstance(op, RecordMetric):
                m = self._metrics.setdefault(
                    op.signature,
                    CommandMetrics(
                        signature=op.signature, count=0, duration_sum=0.0, reasons={}, exit_codes={}
                    ),
                )
                self._seen[op.signature] = max(op.at or time.time(), self._seen.get(op.signature, 0.0))
                m.count += 1
                m.duration_sum = round(m.duration_sum + op.duration, 6)
                m.reasons[op.reason] = m.reasons.get(op.reason, 0) + 1
                if op.exit_code is not None:
                    code = str(op.exit_code)
                    m.exit_codes[code] = m.exit_codes.get(code, 0) + 1
        return []

    def _save(self, info: JobInfo) -> None:
        self._jobs[info.id] = info
        self._jobs.move_to_end(info.id)
        while len(self._jobs) > self.max_jobs:
            old, _ = self._jobs.popitem(last=False)
            self._output.pop(old, None)
        if info.session:
            last = info.finished_at or info.started_at or info.queued_at
            prev = self._sessions.get(info.session)
            self._sessions[info.session] = SessionInfo(
                name=info.session,
                created=prev.created if prev else info.queued_at,
                last_active=max(last, prev.last_active if prev else 0.0),
                jobs=sum(1 for j in self._jobs.values() if j.session == info.session),
            )

    async def get_job(self, job_id: str) -> JobInfo | None:
        """A stored record."""
        return self._jobs.get(job_id)

    async def list_jobs(self, query: HistoryParams) -> list[JobInfo]:
        """Newest first, filtered."""
        match = Matcher(query)
        out = []
        for info in sorted(self._jobs.values(), key=lambda j: j.queued_at, reverse=True):
            if not match(info):
                continue
            out.append(info)
            if len(out) >= query.limit:
                break
        return out

    async def read_output(self, job_id: str, offset: int, max_bytes: int) -> list[StoredChunk]:
        """Stored chunks from ``offset``."""
        out, total = [], 0
        for c in self._output.get(job_id, []):
            if c.offset + len(c.data) <= offset:
                continue
            out.append(c)
            total += len(c.data)
            if total >= max_bytes:
                break
        return out

    async def output_end(self, job_id: str) -> int:
        """Offset past the last stored chunk."""
        chunks = self._output.get(job_id)
        return chunks[-1].offset + len(chunks[-1].data) if chunks else 0

    async def unfinished_jobs(self) -> list[JobInfo]:
        """Never any: memory does not outlive the daemon."""
        return []

    async def claude_state(self) -> ClaudeState | None:
        """The last saved Claude retry state."""
        return self._claude

    async def durations(self, signature: str, limit: int) -> list[DurationSample]:
        """Recent runs."""
        return list(self._durations.get(signature, ()))[:limit]

    async def metrics(self, limit: int) -> list[CommandMetrics]:
        """The metrics hook's counters, most frequent first."""
        return sorted(self._metrics.values(), key=lambda m: m.count, reverse=True)[:limit]

    async def signatures(self, limit: int) -> list[str]:
        """Known signatures."""
        return sorted(self._durations)[:limit]

    async def sessions(self, limit: int) -> list[SessionInfo]:
        """Sessions by last activity."""
        return sorted(self._sessions.values(), key=lambda s: s.last_active, reverse=True)[:limit]

    async def session(self, name: str, limit: int) -> SessionDetail | None:
        """One session."""
        info = self._sessions.get(name)
        if info is None:
            return None
        jobs = await self.list_jobs(HistoryParams(session=name, limit=limit))
        return SessionDetail(session=info, jobs=jobs)

    async def prune_signatures(self, keep: int) -> int:
        """Forget all but the ``keep`` signatures whose jobs finished last."""
        doomed = sorted(self._seen, key=self._seen.__getitem__)[: max(0, len(self._seen) - keep)]
        for sig in doomed:
            del self._seen[sig]
            self._durations.pop(sig, None)
            self._metrics.pop(sig, None)
        return len(doomed)

    async def prune(self, older_than: float | None, keep: int | None) -> int:
        """Drop finished jobs by age and count."""
        finished = [j for j in self._jobs.values() if j.state is JobState.FINISHED]
        finished.sort(key=lambda j: j.queued_at)
        doomed: set[str] = set()
        if older_than is not None:
            cutoff = time.time() - older_than
            doomed |= {j.id for j in finished if j.queued_at < cutoff}
        if keep is not None and len(self._jobs) > keep:
            excess = len(self._jobs) - keep
            doomed |= {j.id for j in finished[:excess]}
        for job_id in doomed:
            self._jobs.pop(job_id, None)
            self._output.pop(job_id, None)
        return len(doomed)
