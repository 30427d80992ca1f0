"""Streaming one job's events to one connection, at that connection's pace.

The job never waits for a subscriber: the pump pulls chunks from the job's
output log (memory, else spool) only when the connection has room, and sends a
``job.gap`` only for output that is in neither.
"""

from __future__ import annotations

import asyncio

from ccxd.jobs.job import Job
from ccxd.output.log import STREAMS, Chunk
from ccxd.protocol import (
    HookEvent,
    JobFinished,
    JobQueued,
    JobStarted,
    JobState,
    JobStats,
    Notification,
    OutputChunk,
    OutputCut,
    OutputGap,
    encode,
    output_frame_head,
)
from ccxd.rpc.connection import Connection

__all__ = ["FRAME_BYTES", "encode_chunk", "pump"]

FRAME_BYTES = 192 * 1024
"""A binary output frame takes in further chunks of its stream until it holds this much.

Chunks are at most 64 KiB, so a frame carries at most 256 KiB of output: a
fraction of the 1 MiB that common WebSocket clients accept by default, and few
enough frames per GiB that neither side spends its time on per-frame work.
"""


def encode_chunk(job_id: str, chunk: Chunk, skip: int = 0) -> bytes:
    """The ``job.output`` notification for ``chunk`` (minus its first ``skip`` bytes)."""
    if skip == 0 and chunk.wire is not None:
        return chunk.wire
    raw = chunk.data[skip:] if skip else chunk.data
    data, encoding = OutputChunk.encode_data(raw)
    params = OutputChunk(
        job_id=job_id,
        stream=STREAMS[chunk.stream],
        seq=chunk.seq,
        offset=chunk.offset + skip,
        data=data,
        encoding=encoding,
    )
    wire = encode(Notification(method="job.output", params=params))
    if skip == 0:
        chunk.wire = wire  # every subscriber sends the same bytes
    return wire


async def pump(
    conn: Connection, job: Job, from_offset: int, with_output: bool, binary: bool = False, stats: bool = False
) -> None:
    """Replay ``job`` from ``from_offset`` then follow it until it finishes.

    With ``binary`` output goes as binary frames (:func:`encode_output_frame`'s
    layout; consecutive chunks of one stream share a frame, up to about
    :data:`FRAME_BYTES`), every other event as JSON; the caller checked that the
    connection can.
    """
    loop = asyncio.get_running_loop()
    changed: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not changed.done():
            changed.set_result(None)

    job.add_listener(wake)
    out = job.log
    offset = from_offset
    seq = out.seq_at(offset) if with_output else 0
    sent_position: int | None = None
    sent_wait: tuple[float | None, str | None] = (None, None)
    sent_started = False
    sent_cut = False
    sent_stats = 0
    sent_hooks = 0
    ev_seq = 0
    try:
        while not conn.closing:
            while sent_hooks < len(job.hooks):  # pre hooks before job.started, post/error before finished
                outcome = job.hooks[sent_hooks]
                sent_hooks += 1
                conn.send(_note(f"hook.{outcome.point}", HookEvent(job.id, outcome)))
            wait = (job.wait_until, job.wait_reason)
            if job.state is JobState.QUEUED and (job.queue_position != sent_position or wait != sent_wait):
                sent_position, sent_wait = job.queue_position, wait
                conn.send(_note("job.queued", JobQueued(job.id, sent_position or 0, *wait)))
            if job.pid is not None and not sent_started:
                sent_started = True
                conn.send(
                    _note(
                        "job.started",
                        JobStarted(
                            job.id,
                            job.pid,
                            job.pgid or job.pid,
                            job.timeout,
                            job.timeout_basis,
                            job.timeout_silence,
                        ),
                    )
                )
            while with_output and seq < out.next_seq:
                await conn.sink.drain()
                if conn.closing:
                    return
                chunk = out.get(seq)
                if chunk is None:
                    seq = out.first_memory_seq
                    resume = out.available_offset(seq)
                    if resume > offset:
                        conn.send(_note("job.gap", OutputGap(job.id, offset, resume, "evicted")))
                    offset = resume
                    continue
                skip = offset - chunk.offset if offset > chunk.offset else 0
                if skip < len(chunk.data):
                    if binary:
                        last = _send_frame(conn, job, chunk, skip)
                        seq = last.seq
                        chunk = last
                    else:
                        conn.send(encode_chunk(job.id, chunk, skip))
                offset = chunk.end
                seq += 1
                if job.kind_state is not None:  # each kind event right after the output holding its line
                    ev_seq = _kind_events(conn, job, ev_seq, from_offset, offset)
            if job.kind_state is not None and (not with_output or seq >= out.next_seq):
                ev_seq = _kind_events(conn, job, ev_seq, from_offset, None)
            if stats and job.usage is not None and job.stats_seq != sent_stats and not job.finished:
                sent_stats = job.stats_seq
                conn.send(_note("job.stats", JobStats(job.id, job.usage)))
            if out.cut and not sent_cut:
                sent_cut = True
                spool = out.spool
                limit = spool.limit if spool is not None else 0
                size = spool.size if spool is not None else out.size
                conn.send(_note("job.output_cut", OutputCut(job.id, size, limit)))
            if job.finished and (not with_output or seq >= out.next_seq):
                if job.retry_notice is not None:
                    conn.send(_note("job.retry", job.retry_notice))
                conn.send(_note("job.finished", JobFinished(job.info())))
                return
            await changed
            changed = loop.create_future()
    finally:
        job.remove_listener(wake)


def _send_frame(conn: Connection, job: Job, first: Chunk, skip: int) -> Chunk:
    """Send ``first`` (minus ``skip`` bytes) and the chunks after it that are ready, as one frame.

    Only chunks of the same stream join (a frame has one), and none for jobs
    with a kind's record (a Claude job), whose notifications (``claude.event``)
    follow the chunk holding their line.  Returns the last chunk sent.
    """
    out = job.log
    parts = [first.data[skip:] if skip else first.data]
    size = len(parts[0])
    last = first
    if job.kind_state is None:
        while size < FRAME_BYTES and last.seq + 1 < out.next_seq:
            nxt = out.get(last.seq + 1)
            if nxt is None or nxt.stream != first.stream:
                break
            parts.append(nxt.data)
            size += len(nxt.data)
            last = nxt
    conn.send_binary_parts([output_frame_head(job.id, first.stream, first.seq, first.offset + skip), *parts])
    return last


def _kind_events(conn: Connection, job: Job, ev_seq: int, after: int, upto: int | None) -> int:
    """Send the notifications of the job's kind (``claude.event``) whose line ended in (after, upto]."""
    assert job.kind_state is not None
    wires, ev_seq = job.kind_state.events_after(ev_seq, after, upto)
    for wire in wires:
        conn.send(wire)
    return ev_seq


def _note(method: str, params: object) -> bytes:
    return encode(Notification(method=method, params=params))
