"""Following a job another node runs (or one still queued fleet-wide) on one connection.

The job's record and output are in the store, written by the node that runs
it; this pump replays the output from a byte offset and then follows it live
(a blocking ``XREAD`` on the job's output stream, through ``RemoteSource``),
until the record says the job finished and every byte before its end was sent.
A job this daemon runs never comes here: its subscribers read the spool
(``rpc/subscription.py``), with no Redis on that path.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from ccxd.output.log import STREAMS
from ccxd.protocol import (
    JobFinished,
    JobInfo,
    JobQueued,
    JobStarted,
    JobState,
    JobStats,
    Notification,
    OutputChunk,
    OutputGap,
    encode,
    output_frame_head,
)
from ccxd.rpc.connection import Connection
from ccxd.store.base import StoredChunk, StoreUnavailable

__all__ = ["RemoteSource", "remote_pump"]

_PAGE = 4 << 20
"""Output read from the store at once."""
_WAIT = 0.25
"""Longest wait for new output before the record is read again (a finish shows at most this late)."""


class RemoteSource(Protocol):
    """Where a remote job's record and output are read (the fleet service: the store, Redis)."""

    async def info(self, job_id: str) -> JobInfo | None:
        """The job's record (or its queued entry as a record); None when unknown."""

    async def chunks(self, job_id: str, offset: int, max_bytes: int) -> list[StoredChunk]:
        """Stored output chunks covering ``offset`` onwards."""

    async def wait_output(self, job: JobInfo, offset: int, timeout: float) -> None:
        """Return once output at or past ``offset`` may be stored, or after ``timeout`` seconds."""

    async def usage(self, job: JobInfo) -> JobInfo | None:
        """The job as its node sees it now (its latest resource sample); None if it cannot tell."""

    @property
    def stats_interval(self) -> float:
        """Seconds between ``job.stats`` samples."""


async def remote_pump(
    conn: Connection,
    source: RemoteSource,
    job_id: str,
    from_offset: int,
    with_output: bool,
    binary: bool = False,
    stats: bool = False,
) -> None:
    """Replay a remote job from ``from_offset``, then follow it until it finished (every byte once)."""
    offset = from_offset
    seq = 0
    sent_queued = sent_started = False
    sent_usage: object = None
    sampled = 0.0
    while not conn.closing:
        try:
            info = await source.info(job_id)
        except StoreUnavailable:
            info = None
        if info is None:
            await _pause(source, None, offset)
            continue
        if info.state is JobState.QUEUED and not sent_queued:
            sent_queued = True
            conn.send(_note("job.queued", JobQueued(job_id, info.queue_position or 0)))
        if info.pid is not None and not sent_started:
            sent_started = True
            pgid = info.pgid or info.pid
            started = JobStarted(
                job_id, info.pid, pgid, info.timeout, info.timeout_basis, info.timeout_silence
            )
            conn.send(_note("job.started", started))
        running = info.state in (JobState.RUNNING, JobState.PAUSED)
        if stats and running and info.node and time.monotonic() - sampled >= source.stats_interval:
            # The record holds the usage of its last change only: ask the node for its latest sample.
            sampled = time.monotonic()
            live = await source.usage(info)
            usage = live.usage if live is not None else None
            if usage is not None and usage != sent_usage:
                sent_usage = usage
                conn.send(_note("job.stats", JobStats(job_id, usage)))
        # The record was read before the output: once it says finished, the output read
        # after it is complete (the node stores a job's output before its final record).
        got = 0
        while with_output and not conn.closing:
            try:
                pieces = await source.chunks(job_id, offset, _PAGE)
            except StoreUnavailable:
                break
            fresh = 0
            for piece in pieces:
                if piece.offset > offset:
                    conn.send(_note("job.gap", OutputGap(job_id, offset, piece.offset, "not stored")))
                    offset = piece.offset
                skip = offset - piece.offset
                if skip >= len(piece.data):
                    continue
                await conn.sink.drain()
                if conn.closing:
                    return
                _send(conn, job_id, piece, skip, seq, binary)
                seq += 1
                fresh += len(piece.data) - skip
                offset = piece.offset + len(piece.data)
            got += fresh
            if not fresh:
                break
        if info.state is JobState.FINISHED:
            if with_output and info.output_bytes > offset and not got:
                # Output the store does not hold (a cap, or lost with its node): say so once.
                conn.send(_note("job.gap", OutputGap(job_id, offset, info.output_bytes, "not stored")))
            conn.send(_note("job.finished", JobFinished(info)))
            return
        if not got:
            await _pause(source, info, offset)


async def _pause(source: RemoteSource, info: JobInfo | None, offset: int) -> None:
    """Wait for more output of a running job, or a little for a record to change."""
    try:
        if info is None or not info.node:
            await source.wait_output(info or _UNKNOWN, offset, _WAIT)
        else:
            await source.wait_output(info, offset, _WAIT)
    except StoreUnavailable:
        await asyncio.sleep(_WAIT)


_UNKNOWN = JobInfo(id="", state=JobState.QUEUED, command="")


def _send(conn: Connection, job_id: str, piece: StoredChunk, skip: int, seq: int, binary: bool) -> None:
    raw = piece.data[skip:] if skip else piece.data
    if binary:
        conn.send_binary_parts([output_frame_head(job_id, piece.stream, seq, piece.offset + skip), raw])
        return
    data, enc = OutputChunk.encode_data(raw)
    chunk = OutputChunk(
        job_id=job_id,
        stream=STREAMS[piece.stream],
        seq=seq,
        offset=piece.offset + skip,
        data=data,
        encoding=enc,
    )
    conn.send(_note("job.output", chunk))


def _note(method: str, params: object) -> bytes:
    return encode(Notification(method=method, params=params))
