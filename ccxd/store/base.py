"""The store interface: what the daemon keeps about jobs, whoever keeps it."""

from __future__ import annotations

from typing import Protocol

from msgspec import Struct

from ccxd.protocol import CommandMetrics, HistoryParams, JobInfo, SessionDetail, SessionInfo
from ccxd.store.ops import ClaudeState, Op

__all__ = ["DurationSample", "Store", "StoreUnavailable", "StoredChunk", "WriteRefused"]


class StoreUnavailable(Exception):
    """The store cannot answer right now (e.g. Redis is down)."""


class WriteRefused(Struct):
    """One write the store refused while it answered the rest of its batch.

    A key that holds another type (``WRONGTYPE``) or a script error is that
    write's failure, not an outage: nothing is journaled or retried for it.
    """

    what: str
    """The write, in words: ``job 0190… (session 'x')``."""
    key: str
    """The key at fault when known (one that holds another type), else empty."""
    error: str
    """The store's words."""


class StoredChunk(Struct):
    """One chunk of output as the store keeps it."""

    stream: int
    offset: int
    data: bytes


class DurationSample(Struct):
    """One recorded run of a command signature."""

    duration: float
    ok: bool
    censored: bool
    at: float


class Store(Protocol):
    """Where job records, output, sessions and durations live.

    Writes arrive as :mod:`ccxd.store.ops` values in batches (see
    :class:`~ccxd.store.writer.StoreWriter`); reads raise
    :class:`StoreUnavailable` when the backend cannot answer.
    """

    name: str
    server: str
    """Which server answers now; when it changes, what the last one acknowledged may be missing."""

    async def open(self) -> None:
        """Connect; raise StoreUnavailable if the backend does not answer."""

    async def close(self) -> None:
        """Release connections."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the backend answers."""

    async def apply(self, ops: list[Op]) -> list[WriteRefused]:
        """Perform writes in order; idempotent, so a batch may be applied twice.

        Return the writes the store refused (the others are done); raise
        StoreUnavailable only when the store itself does not answer.
        """

    async def get_job(self, job_id: str) -> JobInfo | None:
        """A stored job record."""

    async def list_jobs(self, query: HistoryParams) -> list[JobInfo]:
        """Stored jobs newest first, filtered."""

    async def read_output(self, job_id: str, offset: int, max_bytes: int) -> list[StoredChunk]:
        """Stored output chunks covering ``offset`` onwards, up to about ``max_bytes``."""

    async def output_end(self, job_id: str) -> int:
        """Offset just past the last stored chunk (0 if none)."""

    async def unfinished_jobs(self) -> list[JobInfo]:
        """This node's jobs that were never recorded as finished."""

    async def durations(self, signature: str, limit: int) -> list[DurationSample]:
        """Recent runs of a command signature, newest first."""

    async def signatures(self, limit: int) -> list[str]:
        """Known command signatures."""

    async def sessions(self, limit: int) -> list[SessionInfo]:
        """Sessions by last activity, newest first."""

    async def session(self, name: str, limit: int) -> SessionDetail | None:
        """One session and its jobs."""

    async def metrics(self, limit: int) -> list[CommandMetrics]:
        """The metrics hook's counters, most frequent signatures first."""
        ...

    async def prune(self, older_than: float | None, keep: int | None) -> int:
        """Delete finished jobs (and their output) by age and count; return how many."""

    async def prune_signatures(self, keep: int) -> int:
        """Forget the run times and metrics of all but the ``keep`` signatures seen last; return how many."""

    async def claude_state(self) -> ClaudeState | None:
        """This node's Claude retry state (``SaveClaudeState``), if any was saved."""
