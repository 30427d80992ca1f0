"""The handlers behind each protocol method: thin calls into the supervisor."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from ccxd import __version__
from ccxd.errors import InvalidRequest, RpcError
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

__all__ = ["DaemonInfo", "RemoteJobs", "check_placement", "register_methods"]


class RemoteJobs(Protocol):
    """The jobs of a fleet this daemon does not run (``ccxd/fleet/service.py``): queued or on another node.

    The handlers below serve a job of this daemon themselves (no Redis on that
    path) and ask this for any other.
    """

    async def submit(self, params: StartParams, peer: str) -> JobInfo:
        """Queue a job fleet-wide (checked as a local start is); its ``queued`` record."""

    async def get(self, job_id: str) -> JobInfo | None:
        """A job queued fleet-wide or run by any node; None when the fleet knows none."""

    async def list_jobs(self, params: ListParams, local: list[JobInfo]) -> list[JobInfo]:
        """``job.list`` of the whole fleet: ``local`` (this daemon's) merged with the others'."""

    async def follow(
        self, conn: Connection, job_id: str, from_offset: int, output: bool, binary: bool, stats: bool
    ) -> JobInfo | None:
        """Follow a job another node runs (or that is still queued) on ``conn``; None if unknown."""

    async def control(self, verb: str, job_id: str, signal: int | None = None) -> JobInfo | None:
        """``cancel``/``signal``/``pause``/``resume`` a job this daemon does not run; None if unknown."""

    def status_line(self) -> str:
        """``daemon.status``'s fleet line (node, state, slots, nodes up/lost)."""


def check_placement(params: StartParams, node: str, labels: dict[str, str]) -> None:
    """Refuse (-32602) a ``node`` or ``where`` this daemon, outside a fleet, does not match (no I/O)."""
    if params.node is not None and params.node != node:
        raise InvalidRequest(
            f"node {params.node!r} is not this daemon ({node!r}) and fleet = false: "
            "no other node can run it - at `$.params.node`"
        )
    for key, want in sorted(params.where.items()):
        have = labels.get(key)
        if have != want:
            has = f"has {key}={have!r}" if have is not None else f"has no label {key!r}"
            raise InvalidRequest(
                f"this daemon ({node!r}) {has}, the job needs {key}={want!r}, and fleet = false: "
                f"no other node can run it - at `$.params.where.{key}`"
            )


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
    dispatcher: Dispatcher,
    sup: Supervisor,
    info: DaemonInfo,
    store: Store | None = None,
    fleet: RemoteJobs | None = None,
) -> None:
    """Register the job and daemon methods on ``dispatcher``.

    ``store`` answers ``job.get`` and ``job.read`` for jobs this daemon no longer
    holds in memory (older jobs, jobs of a previous run or of another node).
    ``fleet`` (fleet mode) queues new jobs fleet-wide and serves the jobs this
    daemon does not run.
    """

    async def stored(job_id: str) -> JobInfo:
        if fleet is not None:
            found_in_fleet = await fleet.get(job_id)
            if found_in_fleet is None:
                raise RpcError.job_not_found(job_id)
            return found_in_fleet
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
        if fleet is not None:
            queued = await fleet.submit(p, conn.peer)
            if p.subscribe:
                await fleet.follow(conn, queued.id, 0, True, p.binary, False)
            return queued
        check_placement(p, sup.node, sup.config.node_labels)
        job = await sup.start(p, peer=conn.peer)
        if p.subscribe:
            follow(conn, job.id, 0, True, p.binary)
        return job.info()

    async def get(p: JobRef, conn: Connection) -> JobInfo:
        job = sup.jobs.get(p.job_id)
        return job.info() if job is not None else await stored(p.job_id)

    async def list_jobs(p: ListParams, conn: Connection) -> JobList:
        local = sup.list_jobs(p)
        return JobList(jobs=await fleet.list_jobs(p, local) if fleet is not None else local)

    async def subscribe(p: SubscribeParams, conn: Connection) -> SubscribeResult:
        conn.require_binary(p.binary)
        if p.job_id not in sup.jobs and fleet is not None:
            # Queued fleet-wide or run by another node: its output comes through Redis.
            found = await fleet.follow(conn, p.job_id, p.from_offset, p.output, p.binary, p.stats)
            if found is None:
                raise RpcError.job_not_found(p.job_id)
            return SubscribeResult(job=found)
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

    async def elsewhere(verb: str, job_id: str, sig: int | None = None) -> JobInfo | None:
        """The verb done by the fleet for a job this daemon does not run (None: not in a fleet)."""
        if fleet is None or job_id in sup.jobs:
            return None
        done = await fleet.control(verb, job_id, sig)
        if done is None:
            raise RpcError.job_not_found(job_id)
        return done

    async def cancel(p: JobRef, conn: Connection) -> JobInfo:
        return await elsewhere("cancel", p.job_id) or sup.cancel(p.job_id).info()

    async def send_signal(p: SignalParams, conn: Connection) -> JobInfo:
        sig = parse_signal(p.signal)
        return await elsewhere("signal", p.job_id, sig) or sup.send_signal(p.job_id, sig).info()

    async def pause(p: JobRef, conn: Connection) -> JobInfo:
        return await elsewhere("pause", p.job_id) or sup.pause(p.job_id).info()

    async def resume(p: JobRef, conn: Connection) -> JobInfo:
        return await elsewhere("resume", p.job_id) or sup.resume(p.job_id).info()

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
            fleet=fleet.status_line() if fleet is not None else "",
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
