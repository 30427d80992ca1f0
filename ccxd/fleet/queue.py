"""The fleet's job queue: submit a job, and take the next one this node may run.

A job waits as an entry on one of four streams a node reads in order: the jobs
pinned to it, then ``high``, ``normal`` and ``low`` (consumer group ``nodes``,
consumer = node name).  A node that reads an entry either claims it (``claim``:
the job's epoch grows, the node's running set holds it) or passes it on
(``pass``: queued again at the tail, or parked once every up node passed it).
An entry is acknowledged only by those scripts, so an entry read by a node that
died before either is still pending and another node takes it
(:meth:`FleetQueue.take_stale`, ``XAUTOCLAIM`` after a lease).

:meth:`FleetQueue.next` blocks on Redis (``XREADGROUP … BLOCK``) and
:meth:`FleetQueue.submit` may (``WAIT``): give the queue a client whose socket
timeout is longer than those waits, on a connection the store does not share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ccxd.fleet import keys
from ccxd.fleet.entry import BadSeal, JobEntry, Unreadable, pack_entry, unpack_entry
from ccxd.fleet.placement import mismatch
from ccxd.fleet.scripts import Scripts, text
from ccxd.protocol import JobInfo, JobState
from ccxd.store import keys as store_keys

__all__ = ["Claimed", "DuplicateJob", "FleetQueue", "QueuedInfo"]

log = logging.getLogger("ccxd.fleet")

_REPLICAS_CHECKED = 10.0
"""Seconds a count of the primary's replicas is trusted before :meth:`FleetQueue.submit` asks again."""
_WAIT_MS = 1000
_STALE_BATCH = 100

_json = msgspec.json.Encoder()
_info_decoder = msgspec.json.Decoder(JobInfo)


class DuplicateJob(ValueError):
    """A fleet job with this id exists already."""


class Claimed(msgspec.Struct, frozen=True):
    """A job this node claimed: run ``entry`` as job ``job_id``; its writes carry ``epoch``."""

    job_id: str
    entry: JobEntry
    """Its spec; for a run again of a lost job, already with the new id, ``retry_of`` and ``attempt``."""
    epoch: int
    """The fence: the store refuses this job's writes once the epoch has moved on (``fleet_epoch``)."""
    stream: str


class QueuedInfo(msgspec.Struct, frozen=True):
    """Where a fleet job stands in the queue (``job.get`` of a job no node has recorded yet)."""

    state: str
    """``queued``, ``claimed``, ``cancelled``, ``done`` or ``lost``."""
    node: str
    """The node that claimed it ("" while queued)."""
    epoch: int
    retried_by: str | None = None
    record: JobInfo | None = None
    """The queued record the submitter left (its ``job.start`` answer), if any."""


class FleetQueue:
    """Submit, claim, pass, finish and cancel fleet jobs on one Redis.

    ``key`` is the fleet secret (entries are sealed with it); ``mint_id`` makes
    a job id, for a run again of a job lost with its node (the node that claims
    it names it).
    """

    def __init__(self, redis: aioredis.Redis, key: bytes, *, mint_id: Callable[[], str]) -> None:
        self.redis = redis
        self.key = key
        self.mint_id = mint_id
        self.scripts = Scripts(redis)
        self._groups: set[str] = set()
        self._pending = True  # this consumer may hold read, unsettled entries (at start, after XAUTOCLAIM)
        self._replicas: tuple[float, int] | None = None
        self._passed_again = False

    # -- submitting -----------------------------------------------------------

    async def submit(self, entry: JobEntry, record: JobInfo | None = None) -> str:
        """Queue ``entry`` (its stream: pinned node, else priority); the stream entry id.

        ``record`` is the job's queued record (what ``job.start`` answered): the
        reaper finishes it as lost when the claimer died before writing its own.
        With replicas, waits (``WAIT``, ≤ 1 s, holding the connection) until one has
        it, so a failover keeps it.
        """
        pin = entry.params.node
        stream = keys.pinned(pin) if pin is not None else keys.queue(entry.bucket)
        stub = _json.encode(record) if record is not None else b""
        spec = pack_entry(self.key, entry)
        await self._ensure_groups([stream])
        got = await self.scripts.submit(entry.job_id, stream, spec, entry.bucket, entry.rerunnable, stub)
        if got is None:
            raise DuplicateJob(f"fleet job {entry.job_id} exists already")
        if await self._replica_count():
            acked = await self.redis.execute_command("WAIT", 1, _WAIT_MS)  # type: ignore[no-untyped-call]
            if not acked:
                log.warning("job %s: no replica confirmed it within %d ms", entry.job_id, _WAIT_MS)
        return got

    async def _replica_count(self) -> int:
        now = time.monotonic()
        if self._replicas is None or now - self._replicas[0] > _REPLICAS_CHECKED:
            info = await self.redis.info("replication")
            self._replicas = (now, int(info.get("connected_slaves", 0)))
        return self._replicas[1]

    async def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job no node has claimed (the caller writes its record); False if not queued."""
        return await self.scripts.cancel_queued(job_id)

    async def requeue_parked(self) -> int:
        """Queue every parked job again (call when a node joins, changes labels or is uncordoned)."""
        return await self.scripts.requeue_parked()

    # -- taking ---------------------------------------------------------------

    async def _ensure_groups(self, streams: Sequence[str]) -> None:
        for stream in streams:
            if stream in self._groups:
                continue
            try:
                await self.redis.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(stream)

    @staticmethod
    def streams(node: str) -> list[str]:
        """The streams ``node`` reads, in order: pinned to it, high, normal, low."""
        return [keys.pinned(node), *(keys.queue(b) for b in keys.BUCKETS)]

    async def next(
        self,
        node: str,
        incarnation: int,
        labels: dict[str, str],
        up_nodes: Sequence[str],
        block_ms: int,
    ) -> Claimed | None:
        """Claim the next job ``node`` may run, waiting up to ``block_ms`` for one; None if none came.

        Call only while the node is ``up`` with a free slot.  Entries it may not run
        (``where``, a pin) are passed on; ``up_nodes`` names the nodes that take jobs
        now (when all of them passed a job, it is parked).  Entries with a bad seal
        are dropped and logged.
        """
        streams = self.streams(node)
        await self._ensure_groups(streams)
        deadline = time.monotonic() + block_ms / 1000
        while True:
            if self._pending:
                entries = await self._read(node, dict.fromkeys(streams, "0"), None)
                if not entries:
                    self._pending = False
                    continue
                # Entries queued since in a stream ahead of the first held one go before it.
                ahead = streams[: streams.index(entries[0][0])]
                if ahead:
                    entries = await self._read(node, dict.fromkeys(ahead, ">"), None) + entries
            else:
                left = int((deadline - time.monotonic()) * 1000)
                entries = await self._read(node, dict.fromkeys(streams, ">"), left if left >= 1 else None)
                if not entries:
                    if left < 1:
                        return None
                    continue
            for i, (stream, entry_id, fields) in enumerate(entries):
                claimed = await self._settle(node, incarnation, labels, up_nodes, stream, entry_id, fields)
                if claimed is not None:
                    if i + 1 < len(entries):
                        self._pending = True
                    return claimed
            if self._passed_again:
                # A job this node passed came back to it: the nodes that could run it are busy.
                # Reading on would only hand it round; wait on the jobs pinned here instead.
                self._passed_again = False
                return await self._pinned_only(node, incarnation, labels, up_nodes, deadline)
            if time.monotonic() >= deadline and not self._pending:
                return None

    async def _pinned_only(
        self, node: str, incarnation: int, labels: dict[str, str], up_nodes: Sequence[str], deadline: float
    ) -> Claimed | None:
        pinned = keys.pinned(node)
        left = int((deadline - time.monotonic()) * 1000)
        if left < 1:
            return None
        for stream, entry_id, fields in await self._read(node, {pinned: ">"}, left):
            claimed = await self._settle(node, incarnation, labels, up_nodes, stream, entry_id, fields)
            if claimed is not None:
                return claimed
        return None

    async def _read(
        self, node: str, streams: dict[Any, Any], block: int | None
    ) -> list[tuple[str, str, dict[Any, Any] | None]]:
        try:
            got: Any = await self.redis.xreadgroup(keys.GROUP, node, streams, count=1, block=block)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The Redis lost the streams (restarted without its data, a failover to an empty replica).
            self._groups.clear()
            await self._ensure_groups(list(streams))
            return []
        # RESP2: [[stream, [(id, fields), …]], …]; fields is None for an entry deleted while pending.
        by_stream = {text(name): entries for name, entries in (got or [])}
        out: list[tuple[str, str, dict[Any, Any] | None]] = []
        for stream in streams:  # priority order, whatever order the reply has
            for entry_id, fields in by_stream.get(stream, []):
                out.append((stream, text(entry_id), fields))
        return out

    async def _drop(self, stream: str, entry_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(stream, keys.GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        await pipe.execute()

    async def _settle(
        self,
        node: str,
        incarnation: int,
        labels: dict[str, str],
        up_nodes: Sequence[str],
        stream: str,
        entry_id: str,
        raw_fields: dict[Any, Any] | None,
    ) -> Claimed | None:
        """Claim or pass one read entry (or drop it when it names nothing runnable)."""
        fields = {text(k): text(v) for k, v in (raw_fields or {}).items()}
        raw_id = fields.get("id") or fields.get("retry_of")
        if raw_id is None:
            if raw_fields is not None:  # None: deleted while pending here (another node settled it)
                log.warning("fleet queue %s: entry %s names no job; dropped", stream, entry_id)
            await self._drop(stream, entry_id)
            return None
        job_id, rerun = raw_id, "id" not in fields
        got: Any = await self.redis.hmget(keys.job(job_id), ["spec", "stub"])
        spec, stub = got
        if spec is None:
            log.warning("fleet queue %s: job %s has no spec; dropped", stream, job_id)
            await self._drop(stream, entry_id)
            return None
        try:
            entry = unpack_entry(self.key, job_id, spec)
        except Unreadable as exc:  # a newer node's entry: one of them runs it (or it is parked)
            log.warning("fleet queue: %s; passed on", exc)
            self._passed_again |= (
                await self.scripts.pass_on(stream, entry_id, job_id, node, up_nodes) == "again"
            )
            return None
        except BadSeal as exc:
            log.warning("fleet queue: not running %s; dropped", exc)
            await self._drop(stream, entry_id)
            return None
        pin = entry.params.node
        why = mismatch(node, labels, "up", entry.params.where, pin)
        if why:
            result = await self.scripts.pass_on(stream, entry_id, job_id, node, [node] if pin else up_nodes)
            log.debug("job %s passed on (%s): %s", job_id, why, result)
            self._passed_again |= result == "again"
            return None
        records = (store_keys.job(node, job_id), store_keys.node_active(node), store_keys.node_jobs(node))
        if not rerun:
            epoch = await self.scripts.claim(stream, entry_id, job_id, node, incarnation, records)
            if epoch > 0:
                return Claimed(job_id, entry, epoch, stream)
        else:
            new_id = self.mint_id()
            again = msgspec.structs.replace(
                entry, job_id=new_id, retry_of=job_id, attempt=entry.attempt + 1, queued_at=time.time()
            )
            new_stub = b""
            if stub:
                try:
                    old = _info_decoder.decode(stub)
                except msgspec.DecodeError:
                    pass
                else:
                    new_stub = _json.encode(
                        msgspec.structs.replace(
                            old,
                            id=new_id,
                            state=JobState.QUEUED,
                            retry_of=job_id,
                            attempt=again.attempt,
                            queued_at=again.queued_at,
                        )
                    )
            records = (store_keys.job(node, new_id), store_keys.node_active(node), store_keys.node_jobs(node))
            spec = pack_entry(self.key, again)
            epoch = await self.scripts.claim_rerun(
                stream, entry_id, job_id, new_id, spec, new_stub, node, incarnation, records
            )
            if epoch > 0:
                return Claimed(new_id, again, epoch, stream)
        if epoch < 0:  # this node stopped being up since it read the entry: let another take it
            await self.scripts.pass_on(stream, entry_id, job_id, node, up_nodes)
        return None

    async def take_stale(self, node: str, lease_ms: int) -> int:
        """Take over entries another consumer read but never settled for ``lease_ms`` (it died); how many.

        They become this node's pending entries, which :meth:`next` settles first.
        """
        streams = self.streams(node)
        await self._ensure_groups(streams)
        taken = 0
        for stream in streams:
            try:
                ids: Any = await self.redis.xautoclaim(
                    stream, keys.GROUP, node, lease_ms, start_id="0-0", count=_STALE_BATCH, justid=True
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._groups.discard(stream)  # gone with its stream: nothing to take, made again on use
                continue
            taken += len(ids)  # redis-py gives JUSTID's ids alone
        if taken:
            self._pending = True
            log.info("took %d queue entries a silent node had read", taken)
        return taken

    # -- settling -------------------------------------------------------------

    async def finish(self, job_id: str, node: str, epoch: int, state: str = "done") -> bool:
        """Mark a claimed job finished (out of ``node``'s running set) if ``epoch`` still holds."""
        return await self.scripts.finish(job_id, node, epoch, state)

    async def queued_info(self, job_id: str) -> QueuedInfo | None:
        """The job's queue state (None for a job the fleet never queued)."""
        got: Any = await self.redis.hmget(keys.job(job_id), ["state", "node", "epoch", "retried_by", "stub"])
        state, node, epoch, retried_by, stub = got
        if state is None:
            return None
        record = None
        if stub:
            try:
                record = _info_decoder.decode(stub)
            except msgspec.DecodeError:
                record = None
        return QueuedInfo(
            state=text(state),
            node=text(node) if node is not None else "",
            epoch=int(epoch or 0),
            retried_by=text(retried_by) if retried_by is not None else None,
            record=record,
        )

    async def waiting(self, nodes: Sequence[str], limit: int) -> list[JobInfo]:
        """Jobs queued fleet-wide and not claimed yet (their queued records), at most ``limit`` a queue.

        Read from every priority queue, the queues pinned to ``nodes`` and the parked
        jobs; a job whose record the submitter left none of (a re-run) is not shown.
        """
        streams = [*(keys.queue(b) for b in keys.BUCKETS), *(keys.pinned(n) for n in nodes)]
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xrange(stream, count=limit)
        pipe.zrange(keys.PARKED, 0, limit - 1)
        *ranges, parked = await pipe.execute()
        ids: list[str] = []
        for entries in ranges:
            for _entry_id, fields in entries:
                job_id = fields.get(b"id")
                if job_id is not None:
                    ids.append(text(job_id))
        ids += [text(i) for i in parked]
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(keys.job(job_id), ["state", "stub"])
        out: list[JobInfo] = []
        for state, stub in await pipe.execute():
            if state is None or text(state) != "queued" or not stub:
                continue
            try:
                out.append(_info_decoder.decode(stub))
            except msgspec.DecodeError:
                continue
        return out

    async def running(self, node: str) -> set[str]:
        """The job ids ``node`` has claimed and not finished."""
        return {text(i) for i in await self.redis.smembers(keys.running(node))}

    async def spec(self, job_id: str) -> JobEntry | None:
        """The job's verified entry (None when absent; :class:`BadSeal` when forged)."""
        raw: Any = await self.redis.hget(keys.job(job_id), "spec")
        return None if raw is None else unpack_entry(self.key, job_id, raw)
