"""The handlers behind each protocol method: thin calls into the supervisor."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from ccxd import __version__
from ccxd.errors import RpcError
from ccxd.output.chunker import complete_length
from ccxd.output.log import STREAMS
from ccxd.protocol import (
    CommandMetrics,
    EmptyParams,
    ErrorCode,
    JobFinished,
    JobInfo,
    JobList,
    JobRef,
    JobState,
    Listener,
    ListParams,
    Notification,
    Ok,
    OutputChunk,
    PingResult,
    ReadParams,
    ReadResult,
    Refusals,
    ReloadResult,
    ShutdownParams,
    ShutdownResult,
    SignalParams,
    StartParams,
    StatusResult,
    StopMode,
    StoreHealth,
    SubscribeParams,
    SubscribeResult,
    encode,
)
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.rpc.subscription import pump
from ccxd.store.base import Store, StoreUnavailable
from ccxd.supervision.shim import shim_state
from ccxd.supervision.supervisor import Supervisor, parse_signal

__all__ = ["DaemonInfo", "register_methods"]


class DaemonInfo:
    """Facts about the running daemon that ``daemon.status`` reports."""

    def __init__(self) -> None:
        self.started_mono = time.monotonic()
        self.listeners: list[Listener] = []
        self.loop_lag_ms = 0.0
        self.connections: Callable[[], int] = lambda: 0
        self.store: Callable[[], str] = lambda: "none"
        self.store_health: Callable[[], StoreHealth] = StoreHealth
        # Begins the daemon's stop (mode, drain timeout); set by the daemon.
        self.request_stop: Callable[[StopMode, float], None] | None = None
        self.cgroups: Callable[[], str] = lambda: "none"
        self.hooks: Callable[[], int] = lambda: 0
        self.metrics: Callable[[], Awaitable[list[CommandMetrics]]] | None = None
        # Re-reads the config (as SIGHUP does); set by the daemon.
        self.reload: Callable[[], ReloadResult] | None = None
        self.fd_limit = 0
        # Connections turned away (the transports' counts); set by the daemon.
        self.refused: Callable[[], Refusals] = Refusals


def register_methods(
    dispatcher: Dispatcher, sup: Supervisor, info: DaemonInfo, store: Store | None = None
) -> None:
    """Register the job and daemon methods on ``dispatcher``.

    ``store`` answers ``job.get`` and ``job.read`` for jobs this daemon no longer
    holds in memory (older jobs, jobs of a previous run or of another node).
    """

    async def stored(job_id: str) -> JobInfo:
        if store is None:
            raise RpcError.job_not_found(job_id)
        try:
            found = await store.get_job(job_id)
        except StoreUnavailable as exc:
            raise RpcError(
                ErrorCode.STORE_UNAVAILABLE,
                f"job {job_id} is not in memory and history is unavailable: {exc}",
            ) from None
        if found is None:
            raise RpcError.job_not_found(job_id)
        return found

    async def replay_stored(conn: Connection, info: JobInfo, offset: int | None) -> None:
        while offset is not None and not conn.closing:
            page = await read_stored(ReadParams(job_id=info.id, offset=offset, max_bytes=4 << 20))
            for chunk in page.chunks:
                await conn.sink.drain()
                conn.send(encode(Notification(method="job.output", params=chunk)))
            if not page.chunks or page.next_offset == offset:
                break
            offset = page.next_offset
        if not conn.closing:
            conn.send(encode(Notification(method="job.finished", params=JobFinished(info))))

    async def read_stored(p: ReadParams) -> ReadResult:
        job = await stored(p.job_id)
        assert store is not None
        try:
            pieces = await store.read_output(p.job_id, p.offset, p.max_bytes)
        except StoreUnavailable as exc:
            raise RpcError(ErrorCode.STORE_UNAVAILABLE, f"history is unavailable: {exc}") from None
        chunks = []
        offset = p.offset
        budget = p.max_bytes
        gap = False
        for piece in pieces:
            if piece.offset > offset:
                gap = True
            skip = max(0, offset - piece.offset)
            raw = piece.data[skip : skip + budget]
            if not raw:
                continue
            data, enc = OutputChunk.encode_data(raw)
            chunks.append(
                OutputChunk(
                    job_id=p.job_id,
                    stream=STREAMS[piece.stream],
                    seq=-1,
                    offset=piece.offset + skip,
                    data=data,
                    encoding=enc,
                )
            )
            offset = piece.offset + skip + len(raw)
            budget -= len(raw)
            if budget <= 0:
                break
        eof = job.state is JobState.FINISHED and (not pieces or budget > 0)
        return ReadResult(chunks=chunks, next_offset=offset, eof=eof, gap=gap)

    def follow(
        conn: Connection,
        job_id: str,
        from_offset: int,
        output: bool,
        binary: bool = False,
        stats: bool = False,
    ) -> None:
        job = sup.get(job_id)
        task = asyncio.get_running_loop().create_task(pump(conn, job, from_offset, output, binary, stats))
        conn.add_subscription(job_id, task)

    async def start(p: StartParams, conn: Connection) -> JobInfo:
        conn.require_binary(p.binary)
        job = await sup.start(p, peer=conn.peer)
        if p.subscribe:
            follow(conn, job.id, 0, True, p.binary)
        return job.info()

    async def get(p: JobRef, conn: Connection) -> JobInfo:
        job = sup.jobs.get(p.job_id)
        return job.info() if job is not None else await stored(p.job_id)

    async def list_jobs(p: ListParams, conn: Connection) -> JobList:
        return JobList(jobs=sup.list_jobs(p))

    async def subscribe(p: SubscribeParams, conn: Connection) -> SubscribeResult:
        conn.require_binary(p.binary)
        if p.job_id not in sup.jobs:
            # A job from history: replay what the store kept, then say it finished.
            info = await stored(p.job_id)
            task = asyncio.get_running_loop().create_task(
                replay_stored(conn, info, p.from_offset if p.output else None)
            )
            conn.add_subscription(p.job_id, task)
            return SubscribeResult(job=info)
        job = sup.get(p.job_id)
        follow(conn, p.job_id, p.from_offset, p.output, p.binary, p.stats)
        return SubscribeResult(job=job.info())

    async def unsubscribe(p: JobRef, conn: Connection) -> Ok:
        return Ok(ok=conn.cancel_subscription(p.job_id))

    async def read(p: ReadParams, conn: Connection) -> ReadResult:
        if p.job_id not in sup.jobs:
            return await read_stored(p)
        job = sup.get(p.job_id)
        out = job.log
        seq = out.seq_at(p.offset)
        offset = p.offset
        chunks: list[OutputChunk] = []
        budget = p.max_bytes
        gap = False
        while seq < out.next_seq and budget > 0:
            chunk = out.get(seq)
            if chunk is None:
                gap = True
                seq = out.first_memory_seq
                offset = max(offset, out.available_offset(seq))
                continue
            skip = max(0, offset - chunk.offset)
            raw = chunk.data[skip : skip + budget]
            if skip + budget < len(chunk.data):
                # Stop at a character boundary so a text chunk stays text.
                raw = raw[: complete_length(raw)] or raw
            data, enc = OutputChunk.encode_data(raw)
            chunks.append(
                OutputChunk(
                    job_id=job.id,
                    stream=STREAMS[chunk.stream],
                    seq=chunk.seq,
                    offset=chunk.offset + skip,
                    data=data,
                    encoding=enc,
                )
            )
            offset = chunk.offset + skip + len(raw)
            budget -= len(raw)
            if skip + len(raw) < len(chunk.data):
                break
            seq += 1
        eof = job.finished and offset >= out.size
        return ReadResult(chunks=chunks, next_offset=offset, eof=eof, gap=gap)

    async def cancel(p: JobRef, conn: Connection) -> JobInfo:
        return sup.cancel(p.job_id).info()

    async def send_signal(p: SignalParams, conn: Connection) -> JobInfo:
        return sup.send_signal(p.job_id, parse_signal(p.signal)).info()

    async def pause(p: JobRef, conn: Connection) -> JobInfo:
        return sup.pause(p.job_id).info()

    async def resume(p: JobRef, conn: Connection) -> JobInfo:
        return sup.resume(p.job_id).info()

    async def status(p: EmptyParams, conn: Connection) -> StatusResult:
        return StatusResult(
            version=__version__,
            pid=os.getpid(),
            node=sup.node,
            uptime=round(time.monotonic() - info.started_mono, 3),
            jobs=sup.counts(),
            listeners=info.listeners,
            loop_lag_ms=round(info.loop_lag_ms, 3),
            connections=info.connections(),
            shell=sup.default_shell,
            shim=shim_state(sup.config.shim_path, sup.config.job_shim).line(),
            store=info.store(),
            store_health=info.store_health(),
            cgroups=info.cgroups(),
            hooks=info.hooks(),
            metrics=await info.metrics() if info.metrics is not None else [],
            fd_limit=info.fd_limit,
            refused=info.refused(),
        )

    async def ping(p: EmptyParams, conn: Connection) -> PingResult:
        return PingResult(pong=True, time=time.time())

    async def shutdown(p: ShutdownParams, conn: Connection) -> ShutdownResult:
        if info.request_stop is None:
            raise RpcError(ErrorCode.INTERNAL_ERROR, "this daemon cannot be stopped over the protocol")
        mode = p.mode or sup.config.on_stop
        timeout = p.drain_timeout if p.drain_timeout is not None else sup.config.drain_timeout
        counts = sup.counts()
        # The reply is written before the stop begins (the stop runs on a later loop turn).
        asyncio.get_running_loop().call_soon(info.request_stop, mode, timeout)
        return ShutdownResult(mode=mode, running=counts["running"] + counts["paused"])

    async def reload(p: EmptyParams, conn: Connection) -> ReloadResult:
        if info.reload is None:
            raise RpcError(ErrorCode.INTERNAL_ERROR, "this daemon cannot reload over the protocol")
        return info.reload()

    table: dict[str, Callable[..., object]] = {
        "job.start": start,
        "job.get": get,
        "job.list": list_jobs,
        "job.subscribe": subscribe,
        "job.unsubscribe": unsubscribe,
        "job.read": read,
        "job.cancel": cancel,
        "job.signal": send_signal,
        "job.pause": pause,
        "job.resume": resume,
        "daemon.status": status,
        "daemon.ping": ping,
        "daemon.shutdown": shutdown,
        "daemon.reload": reload,
    }
    for name, handler in table.items():
        dispatcher.register(name, handler)  # type: ignore[arg-type]
