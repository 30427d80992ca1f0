"""The fleet's jobs as any node serves them: submitted fleet-wide, read, followed and controlled.

``rpc/methods.py`` asks this (its ``RemoteJobs``) for a job this daemon does not
run; ``service_follow.remote_pump`` reads a remote job's record and output
through it.  A job this daemon runs never comes here: it is served from memory
and its spool, with no Redis on its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

import msgspec
from redis.exceptions import RedisError

from ccxd.config import Config
from ccxd.errors import JobNotActive, RpcError, UnknownNode
from ccxd.fleet.control import ControlError
from ccxd.fleet.entry import JobEntry
from ccxd.fleet.service_follow import remote_pump
from ccxd.jobs.priority import priority_value
from ccxd.protocol import ErrorCode, HistoryParams, JobInfo, JobReason, JobState, ListParams, StartParams
from ccxd.redact import redact_argv, redact_text, secret_values
from ccxd.rpc.connection import Connection
from ccxd.store.base import StoredChunk, StoreUnavailable
from ccxd.store.keys import output as output_key
from ccxd.supervision.ids import new_job_id

if TYPE_CHECKING:
    from ccxd.fleet.service import Fleet

__all__ = ["CONTROL_TIMEOUT", "FleetJobs", "Verb", "guarded", "info_decoder", "verb_decoder", "verb_encoder"]

log = logging.getLogger("ccxd.fleet")

CONTROL_TIMEOUT: Final = 5.0
"""How long a verb on a job of another node waits for that node's answer."""
_LIVE_TIMEOUT: Final = 1.0
"""How long ``job.get`` of a job running on another node waits for that node before the stored record."""

info_decoder = msgspec.json.Decoder(JobInfo)


class Verb(msgspec.Struct, array_like=True):
    """A control request's parameters: the job, and the signal of ``signal``."""

    job_id: str
    signal: int | None = None


verb_encoder = msgspec.msgpack.Encoder()
verb_decoder = msgspec.msgpack.Decoder(Verb)


async def guarded(config: Config, coro: Coroutine[Any, Any, Any]) -> Any:
    """``coro``'s result; the fleet's Redis not answering (within ``store_timeout``) is a clear RPC error."""
    try:
        async with asyncio.timeout(config.store_timeout + 1):
            return await coro
    except (RedisError, OSError, TimeoutError) as exc:
        raise RpcError(ErrorCode.STORE_UNAVAILABLE, f"the fleet's Redis does not answer: {exc}") from None


class FleetJobs:
    """The fleet's jobs for this node's clients (``RemoteJobs`` of rpc/methods.py, ``RemoteSource``)."""

    def __init__(self, node: Fleet) -> None:
        self.node = node

    async def submit(self, params: StartParams, peer: str) -> JobInfo:
        """Check the request as a local start would, then queue it fleet-wide; its ``queued`` record."""
        self.node.sup.check(params)
        if params.node is not None and params.node not in {n.name for n in self.node.nodes_seen}:
            nodes = await guarded(self.node.config, self.node.registry.nodes())
            if params.node not in {n.name for n in nodes}:
                raise UnknownNode(params.node)
        job_id = new_job_id()
        node = self.node.name
        entry = JobEntry(job_id=job_id, params=params, submitter=node, peer=peer, queued_at=time.time())
        record = queued_record(entry, "")
        await guarded(self.node.config, self.node.queue.submit(entry, record))
        self.node.submitted[job_id] = record
        if len(self.node.submitted) > 10_000:
            self.node.submitted.pop(next(iter(self.node.submitted)))
        return record

    async def get(self, job_id: str) -> JobInfo | None:
        """A job of the fleet: its record (whichever node wrote it), else its queue entry's."""
        try:
            found = await self.node.store.get_job(job_id)
        except StoreUnavailable as exc:
            raise RpcError(ErrorCode.STORE_UNAVAILABLE, f"history is unavailable: {exc}") from None
        if found is not None:
            if found.state is not JobState.QUEUED:
                self.node.submitted.pop(job_id, None)
            if found.state is JobState.RUNNING and found.node and found.node != self.node.name:
                # Records are written at state changes: the running node knows the output so far.
                live = await self.usage(found, timeout=_LIVE_TIMEOUT)
                if live is not None:
                    return live
            return found
        queued = await guarded(self.node.config, self.node.queue.queued_info(job_id))
        if queued is None:
            return None
        record = queued.record or JobInfo(id=job_id, state=JobState.QUEUED, command="")
        if queued.state == "cancelled":
            return msgspec.structs.replace(record, state=JobState.FINISHED, reason=JobReason.CANCELLED)
        if queued.state in ("claimed", "done", "lost"):
            self.node.submitted.pop(job_id, None)
            return msgspec.structs.replace(record, node=queued.node)
        return record

    async def list_jobs(self, params: ListParams, local: list[JobInfo]) -> list[JobInfo]:
        """This daemon's jobs, then the fleet's others from the store and those queued from here."""
        seen = {j.id for j in local}
        out = list(local)
        try:
            stored = await self.node.store.list_jobs(
                HistoryParams(session=params.session, node=params.node, limit=min(params.limit * 4, 10_000))
            )
        except (StoreUnavailable, TimeoutError) as exc:
            log.debug("job.list: the store does not answer: %s", exc)
            stored = []
        extra = [j for j in stored if j.id not in seen]
        for info in stored:  # a node recorded it: it is no longer only queued from here
            if info.state is not JobState.QUEUED or info.node:
                self.node.submitted.pop(info.id, None)
        if params.node in (None, ""):
            extra += [j for j in self.node.submitted.values() if j.id not in seen]
            if params.state in (None, JobState.QUEUED):  # queued fleet-wide from any node
                with contextlib.suppress(RedisError, OSError):
                    names = [n.name for n in await self.node.registry.nodes()]
                    extra += await self.node.queue.waiting(names, params.limit)
        for info in extra:
            if info.id in seen:
                continue
            if params.state is not None and info.state != params.state:
                continue
            if params.session is not None and info.session != params.session:
                continue
            if params.node is not None and info.node != params.node:
                continue
            seen.add(info.id)
            out.append(info)
        out.sort(key=lambda j: j.queued_at, reverse=True)
        return out[: params.limit]

    async def follow(
        self, conn: Connection, job_id: str, from_offset: int, output: bool, binary: bool, stats: bool
    ) -> JobInfo | None:
        """Follow a job this daemon does not run (replay from ``from_offset``, then live)."""
        info = await self.get(job_id)
        if info is None:
            return None
        task = asyncio.get_running_loop().create_task(
            remote_pump(conn, self, job_id, from_offset, output, binary, stats)
        )
        conn.add_subscription(job_id, task)
        return info

    async def control(self, verb: str, job_id: str, signal: int | None = None) -> JobInfo | None:
        """A verb on a job this daemon does not run: asked of its node, or a queued job cancelled."""
        info = await self.get(job_id)
        if info is None:
            return None
        if info.state is JobState.FINISHED:
            raise JobNotActive(f"job {job_id} already finished ({info.reason})", info.state.value)
        if not info.node:
            if verb != "cancel":
                raise JobNotActive(f"job {job_id} is queued, not running", JobState.QUEUED.value)
            if await guarded(self.node.config, self.node.queue.cancel_queued(job_id)):
                done = msgspec.structs.replace(
                    info, state=JobState.FINISHED, reason=JobReason.CANCELLED, finished_at=time.time()
                )
                self.node.submitted.pop(job_id, None)
                if self.node.sup.recorder is not None:  # no node ran it: its record names none
                    self.node.sup.recorder.job_finished(done)
                return done
            info = await self.get(job_id)  # claimed meanwhile: its node cancels it
            if info is None or not info.node:
                raise JobNotActive(f"job {job_id} is no longer queued")
        if info.node == self.node.name:  # not in memory here: a record of this node's previous run
            raise JobNotActive(f"job {job_id} does not run on this node ({info.state})", info.state.value)
        try:
            raw = await self.node.control_channel.request(
                info.node, verb, verb_encoder.encode(Verb(job_id, signal)), CONTROL_TIMEOUT
            )
        except TimeoutError as exc:
            raise RpcError(ErrorCode.INTERNAL_ERROR, f"job {job_id}: {exc}") from None
        except ControlError as exc:
            raise JobNotActive(f"job {job_id} on node {info.node}: {exc}") from None
        except (RedisError, OSError) as exc:
            raise RpcError(ErrorCode.STORE_UNAVAILABLE, f"the fleet's Redis does not answer: {exc}") from None
        return info_decoder.decode(raw)

    # -- what the remote follower reads (service_follow.RemoteSource) ---------

    def status_line(self) -> str:
        """``daemon.status``'s fleet line: this node's."""
        return self.node.status_line()

    async def info(self, job_id: str) -> JobInfo | None:
        """The job's record, or its queued entry's."""
        try:
            return await self.get(job_id)
        except RpcError as exc:
            raise StoreUnavailable(exc.message) from None

    async def chunks(self, job_id: str, offset: int, max_bytes: int) -> list[StoredChunk]:
        """Stored output from ``offset``."""
        return await self.node.store.read_output(job_id, offset, max_bytes)

    async def wait_output(self, job: JobInfo, offset: int, timeout: float) -> None:
        """Block on the job's output stream for an entry past ``offset`` (or sleep while it is queued)."""
        if not job.node or job.state is JobState.QUEUED:
            await asyncio.sleep(timeout)
            return
        try:
            await self.node.blocking.xread(
                {output_key(job.node, job.id): f"{offset}-0"}, count=1, block=int(timeout * 1000)
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from None

    async def usage(self, job: JobInfo, timeout: float = CONTROL_TIMEOUT) -> JobInfo | None:
        """The job as its node sees it now (``job.stats`` of a remote subscriber, ``job.get``)."""
        try:
            verb = verb_encoder.encode(Verb(job.id))
            raw = await self.node.control_channel.request(job.node, "get", verb, timeout)
        except (TimeoutError, ControlError, RedisError, OSError) as exc:
            log.debug("job %s: no sample from node %s: %s", job.id, job.node, exc)
            return None
        return info_decoder.decode(raw)

    @property
    def stats_interval(self) -> float:
        """Seconds between ``job.stats`` samples (``stats_interval``)."""
        return self.node.config.stats_interval


def queued_record(entry: JobEntry, node: str) -> JobInfo:
    """What ``job.start`` answers for a job queued fleet-wide (secrets redacted as in every record)."""
    p = entry.params
    secrets = secret_values(p.env)
    command: str | list[str] = p.command if p.command is not None else ["claude", "-p", "…"]
    shown = redact_text(command, secrets) if isinstance(command, str) else redact_argv(command, secrets)
    return JobInfo(
        id=entry.job_id,
        state=JobState.QUEUED,
        command=shown,
        cwd=p.cwd or "",
        session=p.session,
        tags=p.tags,
        queued_at=entry.queued_at,
        node=node,
        peer=entry.peer,
        attempt=entry.attempt,
        retry_of=entry.retry_of,
        group=p.group,
        priority=priority_value(p.priority),
        after=p.after,
        after_any=p.after_any,
    )
