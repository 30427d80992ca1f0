"""The store on Redis (redis-py's asyncio client).

Job records are JSON strings, output is one Redis Stream per job whose entry
ids are ``offset+1-0`` (so a chunk written twice is refused by Redis, and the
chunk holding an offset is one XREVRANGE away), and sorted sets index jobs by
time per node, across nodes and per session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from ccxd.protocol import CommandMetrics, HistoryParams, JobInfo, JobState, SessionDetail, SessionInfo
from ccxd.redis_url import is_sentinel, parse_sentinel
from ccxd.store import integrity, keys, migrate, scripts
from ccxd.store.base import DurationSample, StoredChunk, StoreUnavailable, WriteRefused
from ccxd.store.connect import describe_target, explain, open_redis
from ccxd.store.ops import (
    AppendOutput,
    ClaudeState,
    Op,
    RecordDuration,
    RecordMetric,
    SaveClaudeState,
    SaveJob,
    describe,
    metrics_from_fields,
)
from ccxd.store.packing import FastPacking
from ccxd.store.query import Matcher
from ccxd.store.sealed_state import seal_claude_state, unseal_claude_state

__all__ = ["RedisStore"]

log = logging.getLogger("ccxd.store")

_DURATIONS_KEPT = 200
_PAGE = 200
_SCAN_LIMIT = 200_000  # most records a filtered history query looks at

_JOB_KEY_TYPES = ("string", "hash", "zset", "zset", "set", "hash", "zset", "zset")
_OUTAGE = re.compile(r"(^|-)(LOADING|OOM|READONLY|MISCONF|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|NOREPLICAS)\b")
"""Replies that say Redis cannot write at all now: an outage (journal and retry), not one write's failure."""

_job_decoder = msgspec.json.Decoder(JobInfo)
_json = msgspec.json.Encoder()
_sample_decoder = msgspec.msgpack.Decoder(DurationSample)
_msgpack = msgspec.msgpack.Encoder()
_FastPacking = FastPacking  # its name before store/packing.py, which tests still use


class RedisStore:
    """Job history in Redis, for one node."""

    def __init__(
        self,
        url: str,
        node: str,
        *,
        timeout: float = 2.0,
        output_limit: int = 64 * 1024 * 1024,
        key: bytes | None = None,
        tls_ca_file: str = "",
        tls_cert_file: str = "",
        tls_key_file: str = "",
    ) -> None:
        self.url = url
        self.node = node
        self.timeout = timeout
        self.output_limit = output_limit
        self._key = key if key is not None else os.urandom(integrity.KEY_BYTES)
        """Seals the Claude retry state (the daemon's ``store.key``; unset: this instance's own)."""
        self._tls = (tls_ca_file, tls_cert_file, tls_key_file)
        self.name = describe_target(url)
        """``redis``, or ``redis (sentinel SERVICE via …)`` and the primary it reached last."""
        self.server = ""
        """The server the last connection reached (its run id): another may lack what it acknowledged."""
        self._redis: aioredis.Redis | None = None
        self._scripts = True
        """Write through the Lua scripts of ``scripts.py`` (false: plain commands)."""
        self._seen_indexed = False  # SIGNATURES_SEEN holds every signature (prune_signatures)

    @property
    def redis(self) -> aioredis.Redis:
        """The client (after :meth:`open`)."""
        if self._redis is None:
            raise StoreUnavailable("store not open")
        return self._redis

    async def open(self) -> None:
        """Create the client and check that Redis answers."""
        ca, cert, key = self._tls
        self._redis = open_redis(
            self.url,
            timeout=self.timeout,
            tls_ca_file=ca,
            tls_cert_file=cert,
            tls_key_file=key,
            on_connect=self._identify,
        )
        try:
            await self.ping()
        except StoreUnavailable as exc:
            if not is_sentinel(self.url):
                raise
            why = await explain(self._redis, parse_sentinel(self.url).service)
            raise StoreUnavailable(f"{exc}; the sentinels: {why}") from None
        await self._load_scripts()
        try:
            await migrate.escape_names(self._redis, self.node)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc or type(exc).__name__}") from None

    async def _identify(self, conn: AbstractConnection) -> None:
        """Note which server a new connection reached (a failover or restart changes it)."""
        path = getattr(conn, "path", None)
        address = str(path) if path else f"{getattr(conn, 'host', '')}:{getattr(conn, 'port', '')}"
        try:
            await conn.send_command("INFO", "server")
            info = await conn.read_response()
        except ResponseError:  # an ACL user without INFO: the address is the best we know
            server = address
        else:
            text = info.decode() if isinstance(info, bytes) else str(info)
            server = next((ln[7:].strip() for ln in text.splitlines() if ln.startswith("run_id:")), address)
        if self.server and server != self.server:
            log.warning("the store reached another Redis server (%s, run id %s)", address, server[:12])
        self.server = server
        if is_sentinel(self.url):
            self.name = f"{describe_target(self.url)}: primary {address}"

    async def close(self) -> None:
        """Close the client."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _guard(self, coro: Any) -> Any:
        try:
            # Not wait_for: on Python 3.11 it can swallow a cancellation that races the
            # answer, and the writer's task then never stops.
            async with asyncio.timeout(self.timeout + 1):
                return await coro
        except MasterNotFoundError:
            raise StoreUnavailable(f"{describe_target(self.url)}: no primary known") from None
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis: {exc or type(exc).__name__}") from None

    async def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers."""
        await self._guard(self.redis.ping())

    # -- writes ---------------------------------------------------------------

    async def apply(self, ops: list[Op]) -> list[WriteRefused]:
        """Write a batch in one pipeline; return the writes Redis refused, the rest are written.

        A refused write (a key of another type, a script error) is logged by the
        writer and counted, never taken for an outage: only a Redis that does not
        answer, or answers that it cannot write at all (loading, out of memory,
        read-only), raises StoreUnavailable.  Duplicate output chunks are ignored.
        """
        refused: list[WriteRefused] = []
        pending = ops
        for _ in range(3):
            pipe = self.redis.pipeline(transaction=False)
            sent: list[tuple[Op, int]] = []
            for op in pending:
                try:
                    n = self._queue(pipe, op)
                except (ValueError, TypeError, UnicodeError) as exc:  # nothing of it was queued
                    refused.append(WriteRefused(describe(op), "", f"cannot encode: {exc}"))
                    continue
                if n:
                    sent.append((op, n))
            if not sent:
                break
            results = await self._guard(pipe.execute(raise_on_error=False))
            retry: list[Op] = []
            failed: list[tuple[Op, ResponseError]] = []
            at = 0
            for op, n in sent:
                for res in results[at : at + n]:
                    if res == 0 and isinstance(op, SaveJob | AppendOutput) and op.fleet_epoch:
                        # Fenced: the fleet job moved on to another epoch (its node was declared lost).
                        log.info(
                            "not written (fleet epoch %d is no longer the job's): %s",
                            op.fleet_epoch,
                            describe(op),
                        )
                        continue
                    if not isinstance(res, Exception) or "equal or smaller" in str(res):
                        continue
                    if isinstance(res, NoScriptError):  # Redis restarted: nothing of it ran
                        retry.append(op)
                    elif not isinstance(res, ResponseError) or _OUTAGE.search(str(res)):
                        raise StoreUnavailable(f"redis cannot write: {res}")
                    else:
                        failed.append((op, res))
                    break
                at += n
            for op, err in failed:
                refused.append(WriteRefused(describe(op), await self._key_at_fault(op), str(err)))
            if not retry:
                return refused
            await self._load_scripts()
            pending = retry
        else:
            raise StoreUnavailable("redis keeps losing its scripts")
        return refused

    async def _key_at_fault(self, op: Op) -> str:
        """The first key ``op`` writes that holds another type than it writes ('' if none)."""
        expected = self._key_types(op)
        pipe = self.redis.pipeline(transaction=False)
        for key, _ in expected:
            pipe.type(key)
        found = await self._guard(pipe.execute())
        for (key, kind), have in zip(expected, found, strict=True):
            if have.decode() not in ("none", kind):
                return key
        return ""

    def _key_types(self, op: Op) -> list[tuple[str, str]]:
        """The keys ``op`` writes and the type each must have."""
        if isinstance(op, AppendOutput):
            return [(keys.output(self.node, op.job_id), "stream")]
        if isinstance(op, SaveJob):
            return list(zip(self._job_keys(op.info), _JOB_KEY_TYPES, strict=False))
        if isinstance(op, RecordDuration):
            return [
                (keys.durations(op.signature), "list"),
                (keys.SIGNATURES, "hash"),
                (keys.SIGNATURES_SEEN, "zset"),
            ]
        if isinstance(op, RecordMetric):
            seen = keys.SIGNATURES_SEEN
            return [(keys.metrics(op.signature), "hash"), (keys.METRICS, "zset"), (seen, "zset")]
        return [(keys.claude_state(self.node), "string")]

    def _job_keys(self, info: JobInfo) -> list[str]:
        """The keys a job's record writes, in the order of ``_JOB_KEY_TYPES`` (and of SAVE_JOB's KEYS)."""
        node = info.node or self.node
        names = [keys.job(node, info.id), keys.JOB_NODES, keys.ALL_JOBS, keys.node_jobs(node)]
        names.append(keys.node_active(node))
        if info.session:
            names += [keys.session(info.session), keys.session_jobs(info.session), keys.SESSIONS]
        return names

    def _queue(self, pipe: Any, op: Op) -> int:
        """Queue ``op``'s commands; how many."""
        if isinstance(op, AppendOutput):
            if op.offset + len(op.data) > self.output_limit:
                return 0
            key = keys.output(self.node, op.job_id)
            if op.fleet_epoch:
                fence = self._fence(op.job_id)
                args = (op.fleet_epoch, f"{op.offset + 1}-0", op.stream, op.data)
                pipe.evalsha(scripts.FENCED_APPEND.sha, 2, fence, key, *args)
                return 1
            pipe.xadd(key, {"s": op.stream, "d": op.data}, id=f"{op.offset + 1}-0")
            return 1
        if isinstance(op, SaveJob):
            return self._save_job(pipe, op.info, op.fleet_epoch)
        if isinstance(op, RecordDuration):
            key = keys.durations(op.signature)
            sample = _msgpack.encode(DurationSample(op.duration, op.ok, op.censored, op.at))
            sig_hash = keys.signature_hash(op.signature)
            if self._scripts:
                s = scripts.RECORD_DURATION
                sigs, seen, kept = keys.SIGNATURES, keys.SIGNATURES_SEEN, _DURATIONS_KEPT
                pipe.evalsha(s.sha, 3, key, sigs, seen, sample, kept, sig_hash, op.signature, op.at)
                return 1
            pipe.lpush(key, sample)
            pipe.ltrim(key, 0, _DURATIONS_KEPT - 1)
            pipe.hset(keys.SIGNATURES, sig_hash, op.signature)
            pipe.zadd(keys.SIGNATURES_SEEN, {sig_hash: op.at})
            return 4
        if isinstance(op, SaveClaudeState):
            pipe.set(keys.claude_state(self.node), seal_claude_state(self._key, self.node, op.state))
            return 1
        assert isinstance(op, RecordMetric)
        key = keys.metrics(op.signature)
        reason, exit_field = f"reason:{op.reason}", "" if op.exit_code is None else f"exit:{op.exit_code}"
        sig_hash = keys.signature_hash(op.signature)
        at = op.at or time.time()
        if self._scripts:
            s = scripts.RECORD_METRIC
            seen = keys.SIGNATURES_SEEN
            pipe.evalsha(
                s.sha, 3, key, keys.METRICS, seen, op.signature, op.duration, reason, exit_field, sig_hash, at
            )
            return 1
        pipe.hset(key, "signature", op.signature)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "duration_sum", op.duration)
        pipe.hincrby(key, reason, 1)
        if exit_field:
            pipe.hincrby(key, exit_field, 1)
        pipe.zincrby(keys.METRICS, 1, sig_hash)
        pipe.zadd(keys.SIGNATURES_SEEN, {sig_hash: at})
        return 7 if exit_field else 6

    def _fence(self, job_id: str) -> str:
        """The hash whose epoch fences a fleet job's writes; only with the Lua scripts."""
        if not self._scripts:
            raise ValueError("a fleet job's writes need Redis scripting (EVALSHA)")
        return keys.fleet_job(job_id)

    def _save_job(self, pipe: Any, info: JobInfo, fleet_epoch: int = 0) -> int:
        node = info.node or self.node
        member = keys.member(node, info.id)
        record = _json.encode(info)
        finished = info.state is JobState.FINISHED
        last = info.finished_at or info.started_at or info.queued_at
        if fleet_epoch:
            names = [self._fence(info.id), *self._job_keys(info)]
            fenced: list[Any] = [fleet_epoch, record, info.id, node, member, info.queued_at, int(finished)]
            if info.session:
                fenced += [last, info.session]
            pipe.evalsha(scripts.FENCED_SAVE_JOB.sha, len(names), *names, *fenced)
            return 1
        if self._scripts:
            names = self._job_keys(info)
            args: list[Any] = [record, info.id, node, member, info.queued_at, 1 if finished else 0]
            if info.session:
                args += [last, info.session]
            pipe.evalsha(scripts.SAVE_JOB.sha, len(names), *names, *args)
            return 1
        pipe.set(keys.job(node, info.id), record)
        pipe.hset(keys.JOB_NODES, info.id, node)
        pipe.zadd(keys.ALL_JOBS, {member: info.queued_at})
        pipe.zadd(keys.node_jobs(node), {info.id: info.queued_at})
        if finished:
            pipe.srem(keys.node_active(node), info.id)
        else:
            pipe.sadd(keys.node_active(node), info.id)
        if not info.session:
            return 5
        pipe.hsetnx(keys.session(info.session), "created", info.queued_at)
        pipe.hset(keys.session(info.session), "last_active", last)
        pipe.zadd(keys.session_jobs(info.session), {member: info.queued_at})
        # GT still adds new members; it only keeps an older write from going back in time.
        pipe.zadd(keys.SESSIONS, {info.session: last}, gt=True)
        return 9

    async def _load_scripts(self) -> None:
        """Load the write scripts; without scripting (a restricted Redis) write plain commands."""
        try:
            for script in scripts.ALL:
                await self._guard(self.redis.script_load(script.source))
        except StoreUnavailable:
            raise
        except ResponseError as exc:
            self._scripts = False
            log.warning("redis refused the write scripts (%s); writing plain commands", exc)

    # -- reads ----------------------------------------------------------------

    async def _node_of(self, job_id: str) -> str | None:
        node = await self._guard(self.redis.hget(keys.JOB_NODES, job_id))
        return node.decode() if node is not None else None

    async def get_job(self, job_id: str) -> JobInfo | None:
        """The stored record of ``job_id`` from any node."""
        node = await self._node_of(job_id)
        if node is None:
            return None
        raw = await self._guard(self.redis.get(keys.job(node, job_id)))
        return _job_decoder.decode(raw) if raw is not None else None

    async def _records(self, members: list[bytes]) -> list[JobInfo]:
        names = []
        for m in members:
            node, _, job_id = m.decode().rpartition("/")
            names.append(keys.job(node, job_id))
        if not names:
            return []
        raws = await self._guard(self.redis.mget(names))
        return [_job_decoder.decode(r) for r in raws if r is not None]

    async def list_jobs(self, query: HistoryParams) -> list[JobInfo]:
        """Newest first; filters are applied page by page, so a plain list is one round trip."""
        index = keys.session_jobs(query.session) if query.session else keys.ALL_JOBS
        low = query.since if query.since is not None else "-inf"
        match = Matcher(query)
        out: list[JobInfo] = []
        start = 0
        while len(out) < query.limit and start < _SCAN_LIMIT:
            wanted = query.limit - len(out)
            page = max(wanted, _PAGE) if match.filters else wanted
            members = await self._guard(
                self.redis.zrevrangebyscore(index, "+inf", low, start=start, num=page)
            )
            if not members:
                break
            start += len(members)
            for info in await self._records(members):
                if match(info):
                    out.append(info)
                    if len(out) >= query.limit:
                        break
        return out

    async def read_output(self, job_id: str, offset: int, max_bytes: int) -> list[StoredChunk]:
        """Chunks covering ``offset`` onwards."""
        node = await self._node_of(job_id)
        if node is None:
            return []
        key = keys.output(node, job_id)
        # The chunk holding ``offset`` starts at or before it: the last id <= offset+1.
        first = await self._guard(self.redis.xrevrange(key, max=f"{offset + 1}-0", count=1))
        start = first[0][0] if first else "-"
        chunks: list[StoredChunk] = []
        total = 0
        while total < max_bytes:
            entries = await self._guard(self.redis.xrange(key, min=start, count=64))
            if not entries:
                break
            for entry_id, fields in entries:
                chunk_offset = int(entry_id.split(b"-")[0]) - 1
                data = fields[b"d"]
                if chunk_offset + len(data) <= offset:
                    continue
                chunks.append(StoredChunk(int(fields[b"s"]), chunk_offset, data))
                total += len(data)
                if total >= max_bytes:
                    break
            last = entries[-1][0].decode()
            start = "(" + last
            if len(entries) < 64:
                break
        return chunks

    async def output_end(self, job_id: str) -> int:
        """Offset just past the last stored chunk."""
        node = await self._node_of(job_id) or self.node
        last = await self._guard(self.redis.xrevrange(keys.output(node, job_id), count=1))
        if not last:
            return 0
        entry_id, fields = last[0]
        return int(entry_id.split(b"-")[0]) - 1 + len(fields[b"d"])

    async def unfinished_jobs(self) -> list[JobInfo]:
        """This node's jobs never recorded as finished."""
        ids = await self._guard(self.redis.smembers(keys.node_active(self.node)))
        members = [keys.member(self.node, i.decode()).encode() for i in ids]
        return [j for j in await self._records(members) if j.state is not JobState.FINISHED]

    async def claude_state(self) -> ClaudeState | None:
        """This node's Claude retry state: only what carries this daemon's MAC (the rest is logged)."""
        raw = await self._guard(self.redis.get(keys.claude_state(self.node)))
        if raw is None:
            return None
        return unseal_claude_state(self._key, self.node, raw)

    async def durations(self, signature: str, limit: int) -> list[DurationSample]:
        """Recent runs of ``signature``, newest first."""
        raws = await self._guard(self.redis.lrange(keys.durations(signature), 0, limit - 1))
        return [_sample_decoder.decode(r) for r in raws]

    async def metrics(self, limit: int) -> list[CommandMetrics]:
        """The metrics hook's counters, most frequent signatures first."""
        hashes = await self._guard(self.redis.zrevrange(keys.METRICS, 0, limit - 1))
        if not hashes:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for h in hashes:
            pipe.hgetall(keys.metrics_of(h.decode()))
        out = []
        for fields in await self._guard(pipe.execute()):
            decoded = {k.decode(): v.decode() for k, v in fields.items()}
            if decoded:
                out.append(metrics_from_fields(decoded))
        return out

    async def signatures(self, limit: int) -> list[str]:
        """Known command signatures."""
        values = await self._guard(self.redis.hvals(keys.SIGNATURES))
        return sorted(v.decode() for v in values)[:limit]

    async def sessions(self, limit: int) -> list[SessionInfo]:
        """Sessions by last activity, newest first."""
        names = await self._guard(self.redis.zrevrange(keys.SESSIONS, 0, limit - 1))
        out = []
        for name in names:
            info = await self._session_info(name.decode())
            if info is not None:
                out.append(info)
        return out

    async def _session_info(self, name: str) -> SessionInfo | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.session(name))
        pipe.zcard(keys.session_jobs(name))
        fields, count = await self._guard(pipe.execute(raise_on_error=False))
        if isinstance(count, ResponseError):
            count = 0
        if not fields or isinstance(fields, ResponseError):
            return None  # a key of another type where the record belongs: its write was refused (logged)
        return SessionInfo(
            name=name,
            created=float(fields.get(b"created", 0)),
            last_active=float(fields.get(b"last_active", 0)),
            jobs=int(count),
        )

    async def session(self, name: str, limit: int) -> SessionDetail | None:
        """One session with its newest jobs."""
        info = await self._session_info(name)
        if info is None:
            return None
        jobs = await self.list_jobs(HistoryParams(session=name, limit=limit))
        return SessionDetail(session=info, jobs=jobs)

    # -- retention ------------------------------------------------------------

    async def prune(self, older_than: float | None, keep: int | None) -> int:
        """Delete this node's finished jobs past the age or count, in small batches."""
        node_index = keys.node_jobs(self.node)
        removed = 0
        if older_than is not None:
            cutoff = time.time() - older_than
            while True:
                ids = await self._guard(
                    self.redis.zrangebyscore(node_index, "-inf", cutoff, start=0, num=_PAGE)
                )
                batch = await self._finished_only(ids)
                if not batch:
                    break
                removed += await self._delete(batch)
                if len(ids) < _PAGE:
                    break
                await asyncio.sleep(0)  # let the loop breathe between batches
        if keep is not None:
            # ``keep`` counts finished jobs; jobs still running are never pruned.
            active_count = await self._guard(self.redis.scard(keys.node_active(self.node)))
            total = await self._guard(self.redis.zcard(node_index))
            excess = total - active_count - keep
            position = 0
            while excess > 0:
                ids = await self._guard(self.redis.zrange(node_index, position, position + _PAGE - 1))
                if not ids:
                    break
                batch = (await self._finished_only(ids))[:excess]
                position += len(ids) - len(batch)
                if batch:
                    removed += await self._delete(batch)
                    excess -= len(batch)
                await asyncio.sleep(0)
        return removed

    async def prune_signatures(self, keep: int) -> int:
        """Forget all but the ``keep`` signatures whose jobs finished last; return how many went.

        A signature's run times, metrics and name go together, in small batches.
        Signatures recorded before the index of when each was last seen existed
        count as seen longest ago (once per daemon run).
        """
        seen = keys.SIGNATURES_SEEN
        if not self._seen_indexed:
            for key, scan in ((keys.SIGNATURES, self.redis.hscan), (keys.METRICS, self.redis.zscan)):
                cursor = 0
                while True:
                    cursor, found = await self._guard(scan(key, cursor, count=_PAGE))
                    # HSCAN gives {hash: name}, ZSCAN [(hash, score)].
                    members = list(found) if isinstance(found, dict) else [m for m, _ in found]
                    if members:
                        await self._guard(self.redis.zadd(seen, dict.fromkeys(members, 0), nx=True))
                    if not cursor:
                        break
            self._seen_indexed = True
        removed = 0
        while (excess := await self._guard(self.redis.zcard(seen)) - keep) > 0:
            oldest = await self._guard(self.redis.zrange(seen, 0, min(excess, _PAGE) - 1))
            hashes = [h.decode() for h in oldest]
            pipe = self.redis.pipeline(transaction=False)
            for h in hashes:
                pipe.delete(keys.durations_of(h), keys.metrics_of(h))
                pipe.hdel(keys.SIGNATURES, h)
                pipe.zrem(keys.METRICS, h)
                pipe.zrem(seen, h)
            await self._guard(pipe.execute())
            removed += len(hashes)
            await asyncio.sleep(0)  # let the loop breathe between batches
        return removed

    async def _finished_only(self, ids: list[bytes]) -> list[str]:
        active = await self._guard(self.redis.smembers(keys.node_active(self.node)))
        return [i.decode() for i in ids if i not in active]

    async def _delete(self, ids: list[str]) -> int:
        records = await self._records([keys.member(self.node, i).encode() for i in ids])
        sessions = {r.id: r.session for r in records}
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            member = keys.member(self.node, job_id)
            pipe.delete(keys.job(self.node, job_id), keys.output(self.node, job_id))
            pipe.zrem(keys.node_jobs(self.node), job_id)
            pipe.zrem(keys.ALL_JOBS, member)
            pipe.hdel(keys.JOB_NODES, job_id)
            session = sessions.get(job_id)
            if session:
                pipe.zrem(keys.session_jobs(session), member)
        await self._guard(pipe.execute())
        return len(ids)
