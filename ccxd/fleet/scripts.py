"""The fleet's state changes, each one Lua script (docs/fleet-design.md), and typed wrappers.

Every change that more than one node could race on — claiming a job, passing
it on, finishing it, a heartbeat, reaping a lost node, cancelling a queued job —
is one script, so Redis runs it whole or not at all.  Time inside a script is
Redis ``TIME``: leases never depend on the nodes' clocks.

Scripts find a job's hash from its id with the same escaping as
``store.keys.part`` (``_LIB``'s ``part``; a test holds the two equal), so a
script may touch keys it was not given: a fleet needs a single Redis (with
Sentinel or not), never a Cluster.

The job hash (``keys.job``): ``spec`` (sealed entry), ``state`` (``queued`` /
``claimed`` / ``cancelled`` / ``done`` / ``lost``), ``node``, ``inc`` (the
claimer's incarnation), ``epoch`` (the fence), ``prio``, ``stream`` (the queue it
goes back to), ``rerun`` (``1``: run again when its node is lost), ``skipped``,
``queued`` (ms), ``stub`` (a queued record the reaper finishes when the claimer
wrote none), ``rkey``/``akey``/``nkey`` (the claimer's record, active set and job
index keys), ``retry_of``, ``retried_by``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from redis.typing import EncodableT

from ccxd.fleet import keys
from ccxd.store import keys as store_keys

__all__ = [
    "Heartbeat",
    "PassResult",
    "Reaped",
    "Scripts",
    "text",
]

Heartbeat = Literal["ok", "joined", "lost"]
"""``joined``: a new incarnation (requeue parked jobs); ``lost``: the reaper declared this one lost."""
PassResult = Literal["requeued", "again", "parked", "gone"]
"""``again``: requeued, and this node had passed it before (it should stop reading that queue a while)."""


class Reaped(msgspec.Struct, frozen=True):
    """What reaping one job did.

    ``outcome``: ``lost`` (its record finished as lost), ``rerun`` (and queued to run again),
    ``done`` (its record had finished already), ``unrecorded`` (lost; no record to rewrite).
    """

    node: str
    job_id: str
    outcome: str


def text(value: Any) -> str:
    """A Redis reply as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


_LIB = r"""
local function part(s)
  s = string.gsub(s, '[%z\1-\32\127%%:%*%?%[%]{}\\]', function(c)
    return string.format('%%%02X', string.byte(c))
  end)
  s = string.gsub(s, '\194[\128-\159]', function(c)
    return string.format('%%%02X%%%02X', string.byte(c, 1, 2))
  end)
  return s
end
-- A settled job's hash outlives it a week (job.get of a job no node recorded, links to a re-run);
-- a write fenced by it after that is refused all the same (no epoch matches).
local SETTLED_TTL = 7 * 86400
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t
end
local function node_state(states, name)
  local v = redis.call('HGET', states, name)
  if not v then return nil, 'lost' end
  local inc, st = string.match(v, '^(%S+) (%S+)$')
  return inc, st
end
local function entry_fields(h)
  local st = redis.call('HGET', h, 'state')
  if st == 'lost' then return {'retry_of', ''} end
  return {'id', ''}
end
-- A stored JobInfo JSON finished as lost, changed in place (cjson would round numbers and turn
-- empty lists into objects): state, then the fields it lacks.
local function lost_record(rec, fin, finished_s, err, node, stored)
  local ok, t = pcall(cjson.decode, rec)
  if not ok or type(t) ~= 'table' then return nil end
  local out, n = string.gsub(rec, '^({"id":"[^"\\]*","state":)"[a-z_]+"', '%1"finished"', 1)
  if n ~= 1 then return nil end
  local add = ''
  -- The output that reached Redis may be past the last record's count (records lag output).
  if stored and stored > (tonumber(t.output_bytes) or 0) then
    local m
    out, m = string.gsub(out, '"output_bytes":%d+', '"output_bytes":' .. stored, 1)
    if m == 0 then add = add .. ',"output_bytes":' .. stored end
  end
  if t.reason == nil then add = add .. ',"reason":"lost"' end
  if t.finished_at == nil then add = add .. ',"finished_at":' .. fin end
  if t.error == nil then add = add .. ',"error":' .. cjson.encode(err) end
  if t.node == nil then add = add .. ',"node":' .. cjson.encode(node) end
  if t.duration == nil and type(t.started_at) == 'number' then
    add = add .. ',"duration":' .. string.format('%.6f', math.max(0, finished_s - t.started_at))
  end
  return string.sub(out, 1, -2) .. add .. '}'
end
"""

_SUBMIT = """
-- KEYS: job hash, stream.  ARGV: id, spec, prio, rerun, stub, entry field
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local now = now_ms()
redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'state', 'queued', 'epoch', 0, 'prio', ARGV[3],
  'stream', KEYS[2], 'rerun', ARGV[4], 'stub', ARGV[5], 'queued', now)
return redis.call('XADD', KEYS[2], '*', ARGV[6], ARGV[1])
"""

_CLAIM = """
-- KEYS: job hash, stream, running set, states.  ARGV: group, entry, node, incarnation, id, rkey, akey, nkey
local inc, st = node_state(KEYS[4], ARGV[3])
if inc ~= ARGV[4] or st ~= 'up' then return -1 end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'state', 'claimed', 'node', ARGV[3], 'inc', ARGV[4],
  'rkey', ARGV[6], 'akey', ARGV[7], 'nkey', ARGV[8])
redis.call('SADD', KEYS[3], ARGV[5])
return epoch
"""

_CLAIM_RERUN = """
-- KEYS: lost job's hash, new job's hash, stream, running set, states.
-- ARGV: group, entry, node, incarnation, lost id, new id, new spec, rkey, akey, nkey, new stub
local inc, st = node_state(KEYS[5], ARGV[3])
if inc ~= ARGV[4] or st ~= 'up' then return -1 end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'state', 'rerun', 'retried_by', 'prio', 'stream', 'rkey')
if f[1] ~= 'lost' or f[2] ~= '1' or f[3] or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'retried_by', ARGV[6])
redis.call('EXPIRE', KEYS[1], SETTLED_TTL)
local now = now_ms()
redis.call('HSET', KEYS[2], 'spec', ARGV[7], 'state', 'claimed', 'epoch', 1, 'prio', f[4],
  'stream', f[5], 'rerun', '1', 'stub', ARGV[11], 'queued', now, 'node', ARGV[3], 'inc', ARGV[4],
  'retry_of', ARGV[5], 'rkey', ARGV[8], 'akey', ARGV[9], 'nkey', ARGV[10])
redis.call('SADD', KEYS[4], ARGV[6])
if f[6] then
  local rec = redis.call('GET', f[6])
  if rec and not string.find(rec, '"retried_by":', 1, true) then
    redis.call('SET', f[6], string.sub(rec, 1, -2) .. ',"retried_by":' .. cjson.encode(ARGV[6]) .. '}')
  end
end
return 1
"""

_HAND_ON = """
-- KEYS: job hash, stream, parked.  ARGV: group, entry, node, id, up node…
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'state', 'rerun', 'retried_by', 'skipped')
local field
if f[1] == 'queued' then field = 'id'
elseif f[1] == 'lost' and f[2] == '1' and not f[3] then field = 'retry_of'
else return 'gone' end
local skipped = f[4] or ''
local seen = {}
for n in string.gmatch(skipped, '[^,]+') do seen[n] = true end
local again = seen[ARGV[3]]
if not again then
  seen[ARGV[3]] = true
  skipped = (skipped == '' and ARGV[3]) or (skipped .. ',' .. ARGV[3])
  redis.call('HSET', KEYS[1], 'skipped', skipped)
end
for i = 5, #ARGV do
  if not seen[ARGV[i]] then
    redis.call('XADD', KEYS[2], '*', field, ARGV[4])
    return (again and 'again') or 'requeued'
  end
end
redis.call('ZADD', KEYS[3], now_ms(), ARGV[4])
return 'parked'
"""

_REQUEUE_PARKED = """
-- KEYS: parked.  ARGV: job hash prefix, most to requeue
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local n = 0
for _, id in ipairs(ids) do
  local h = ARGV[1] .. part(id)
  local f = redis.call('HMGET', h, 'state', 'rerun', 'retried_by', 'stream')
  local field
  if f[1] == 'queued' then field = 'id'
  elseif f[1] == 'lost' and f[2] == '1' and not f[3] then field = 'retry_of' end
  if field and f[4] then
    redis.call('HDEL', h, 'skipped')
    redis.call('XADD', f[4], '*', field, id)
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
return n
"""

_FINISH = """
-- KEYS: job hash, running set.  ARGV: id, node, epoch, state
local f = redis.call('HMGET', KEYS[1], 'epoch', 'node', 'state')
if f[1] ~= ARGV[3] or f[2] ~= ARGV[2] or f[3] ~= 'claimed' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[4])
redis.call('EXPIRE', KEYS[1], SETTLED_TTL)
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""

_CANCEL_QUEUED = """
-- KEYS: job hash, parked.  ARGV: id
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled')
redis.call('EXPIRE', KEYS[1], SETTLED_TTL)
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

_HEARTBEAT = """
-- KEYS: alive, nodes, states.  ARGV: name, incarnation, packed info
local inc, st = node_state(KEYS[3], ARGV[1])
if inc and tonumber(ARGV[2]) < tonumber(inc) then return 'lost' end
if inc == ARGV[2] and st == 'lost' then return 'lost' end
local result = 'ok'
if inc ~= ARGV[2] then
  local keep = inc and (st == 'draining' or st == 'cordoned')
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ' ' .. ((keep and st) or 'up'))
  result = 'joined'
end
redis.call('ZADD', KEYS[1], now_ms(), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return result
"""

_NEW_INCARNATION = """
-- KEYS: states.  ARGV: name.  Redis time in microseconds, past the node's last incarnation.
local _, t = now_ms()
local inc = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = node_state(KEYS[1], ARGV[1])
if old and tonumber(old) >= inc then inc = tonumber(old) + 1 end
return string.format('%d', inc)
"""

_SET_STATE = """
-- KEYS: states.  ARGV: name, state
local inc, st = node_state(KEYS[1], ARGV[1])
if not inc then return 'unknown' end
if st == 'lost' then return 'lost' end
redis.call('HSET', KEYS[1], ARGV[1], inc .. ' ' .. ARGV[2])
return 'ok'
"""

_LEAVE = """
-- KEYS: states, alive, nodes, running set.  ARGV: name, incarnation.
-- A node stopping cleanly with no claimed job leaves the registry; a drained or cordoned one
-- stays (that state outlives a restart), and so does one that still holds claims.
local inc, st = node_state(KEYS[1], ARGV[1])
if inc ~= ARGV[2] or st ~= 'up' or redis.call('SCARD', KEYS[4]) > 0 then return 'kept' end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 'left'
"""

_STALE = """
-- KEYS: alive, states.  ARGV: lease ms.  Nodes whose lease ran out and that are not reaped.
local now = now_ms()
local out = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))) do
  local _, st = node_state(KEYS[2], name)
  if st ~= 'lost' then table.insert(out, name) end
end
return out
"""

_REAP_NODE = """
-- KEYS: alive, states, running set.  ARGV: name, lease ms, job hash prefix, job-node, all jobs
local now, t = now_ms()
local hb = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not hb or now - tonumber(hb) <= tonumber(ARGV[2]) then return {} end
local inc, st = node_state(KEYS[2], ARGV[1])
if inc and st ~= 'lost' then redis.call('HSET', KEYS[2], ARGV[1], inc .. ' lost') end
local fin_s = tonumber(t[1]) + tonumber(t[2]) / 1000000
local fin = string.format('%d.%06d', t[1], t[2])
local err = 'node ' .. ARGV[1] .. ' was lost (it did not renew its lease)'
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local h = ARGV[3] .. part(id)
  local f = redis.call('HMGET', h, 'state', 'node', 'rerun', 'stream', 'rkey', 'akey', 'nkey', 'stub')
  if f[1] == 'claimed' and f[2] == ARGV[1] then
    redis.call('HINCRBY', h, 'epoch', 1)
    local rec = f[5] and redis.call('GET', f[5])
    local outcome = 'lost'
    if rec and string.find(rec, '^{"id":"[^"\\\\]*","state":"finished"') then
      redis.call('HSET', h, 'state', 'done')
      outcome = 'done'
    else
      redis.call('HSET', h, 'state', 'lost')
      local fresh = not rec
      local stored = nil
      if f[5] then  -- the record's key names the node's output stream: ...:job:<id> -> ...:out:<id>
        local okey = string.gsub(f[5], ':job:([^:]*)$', ':out:%1')
        local last = redis.call('XREVRANGE', okey, '+', '-', 'COUNT', 1)[1]
        if last then
          local d = ''
          for i = 1, #last[2], 2 do if last[2][i] == 'd' then d = last[2][i + 1] end end
          stored = tonumber(string.match(last[1], '^(%d+)')) - 1 + #d
        end
      end
      local new = lost_record(rec or f[8] or '', fin, fin_s, err, ARGV[1], stored)
      if new and f[5] then
        redis.call('SET', f[5], new)
        if f[6] then redis.call('SREM', f[6], id) end
        if fresh then
          local qs = (redis.call('HGET', h, 'queued') or now) / 1000
          redis.call('HSET', ARGV[4], id, ARGV[1])
          redis.call('ZADD', ARGV[5], qs, ARGV[1] .. '/' .. id)
          if f[7] then redis.call('ZADD', f[7], qs, id) end
        end
      else
        outcome = 'unrecorded'
      end
      if f[3] == '1' and f[4] then
        redis.call('XADD', f[4], '*', 'retry_of', id)
        if outcome == 'lost' then outcome = 'rerun' end
      else
        redis.call('EXPIRE', h, SETTLED_TTL)
      end
    end
    if outcome == 'done' then redis.call('EXPIRE', h, SETTLED_TTL) end
    table.insert(out, id)
    table.insert(out, outcome)
  end
  redis.call('SREM', KEYS[3], id)
end
return out
"""


class Scripts:
    """The fleet scripts on one client (``register_script``: EVALSHA, loaded again after NOSCRIPT)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        reg = redis.register_script
        self._submit = reg(_LIB + _SUBMIT)
        self._claim = reg(_LIB + _CLAIM)
        self._claim_rerun = reg(_LIB + _CLAIM_RERUN)
        self._pass = reg(_LIB + _HAND_ON)
        self._requeue = reg(_LIB + _REQUEUE_PARKED)
        self._finish = reg(_LIB + _FINISH)
        self._cancel = reg(_LIB + _CANCEL_QUEUED)
        self._heartbeat = reg(_LIB + _HEARTBEAT)
        self._new_incarnation = reg(_LIB + _NEW_INCARNATION)
        self._set_state = reg(_LIB + _SET_STATE)
        self._stale = reg(_LIB + _STALE)
        self._leave = reg(_LIB + _LEAVE)
        self._reap_node = reg(_LIB + _REAP_NODE)
        self._part = reg(_LIB + "return part(ARGV[1])")

    async def submit(
        self, job_id: str, stream: str, spec: bytes, prio: str, rerun: bool, stub: bytes, field: str = "id"
    ) -> str | None:
        """Create the job's hash (``queued``) and queue an entry; None when the id exists already."""
        args: list[EncodableT] = [job_id, spec, prio, "1" if rerun else "0", stub, field]
        entry = await self._submit(keys=[keys.job(job_id), stream], args=args)
        return None if entry is None else text(entry)

    async def claim(
        self, stream: str, entry: str, job_id: str, node: str, incarnation: int, records: Sequence[str]
    ) -> int:
        """The job's new epoch if ``node`` (up in ``incarnation``) claimed it.

        0 if it is not queued any more (the entry is acknowledged); -1 if the node is
        not up (nothing done).  ``records``: the claimer's record key, active set and
        job index (``store.keys``).
        """
        ks = [keys.job(job_id), stream, keys.running(node), keys.STATES]
        args: list[EncodableT] = [keys.GROUP, entry, node, str(incarnation), job_id, *records]
        return int(await self._claim(keys=ks, args=args))

    async def claim_rerun(
        self,
        stream: str,
        entry: str,
        lost_id: str,
        new_id: str,
        spec: bytes,
        stub: bytes,
        node: str,
        incarnation: int,
        records: Sequence[str],
    ) -> int:
        """Claim the run again of a job lost with its node, as ``new_id`` (epoch 1).

        1, or 0 / -1 as :meth:`claim`.  The lost job's hash and record get ``retried_by``.
        """
        ks = [keys.job(lost_id), keys.job(new_id), stream, keys.running(node), keys.STATES]
        args: list[EncodableT] = [keys.GROUP, entry, node, str(incarnation), lost_id, new_id, spec]
        args += [*records, stub]
        return int(await self._claim_rerun(keys=ks, args=args))

    async def pass_on(
        self, stream: str, entry: str, job_id: str, node: str, up_nodes: Sequence[str]
    ) -> PassResult:
        """``node`` does not match the job: queue it again at the tail, or park it.

        Parked once every up node in ``up_nodes`` passed it; ``again`` when requeued
        though this node had passed it before (the nodes that could run it are busy);
        ``gone`` when it was no longer queued (the entry is dropped).
        """
        ks = [keys.job(job_id), stream, keys.PARKED]
        result = text(await self._pass(keys=ks, args=[keys.GROUP, entry, node, job_id, *up_nodes]))
        return result  # type: ignore[return-value]  # the script returns one of PassResult

    async def requeue_parked(self, most: int = 1000) -> int:
        """Queue parked jobs again (a node joined, changed labels or was uncordoned); how many."""
        return int(await self._requeue(keys=[keys.PARKED], args=[keys.JOB_PREFIX, most]))

    async def finish(self, job_id: str, node: str, epoch: int, state: str = "done") -> bool:
        """Mark a claimed job finished if ``node`` still holds it at ``epoch``."""
        ks = [keys.job(job_id), keys.running(node)]
        return bool(await self._finish(keys=ks, args=[job_id, node, str(epoch), state]))

    async def cancel_queued(self, job_id: str) -> bool:
        """``queued`` → ``cancelled`` (no node will claim it); False if it was not queued."""
        return bool(await self._cancel(keys=[keys.job(job_id), keys.PARKED], args=[job_id]))

    async def heartbeat(self, name: str, incarnation: int, info: bytes) -> Heartbeat:
        """Renew ``name``'s lease and store its packed NodeInfo."""
        ks = [keys.ALIVE, keys.NODES, keys.STATES]
        result = text(await self._heartbeat(keys=ks, args=[name, str(incarnation), info]))
        return result  # type: ignore[return-value]  # the script returns one of Heartbeat

    async def new_incarnation(self, name: str) -> int:
        """A fresh incarnation for ``name``: Redis time in µs, past any it had."""
        return int(text(await self._new_incarnation(keys=[keys.STATES], args=[name])))

    async def set_state(self, name: str, state: str) -> Literal["ok", "unknown", "lost"]:
        """Give a known, not lost node ``state``."""
        result = text(await self._set_state(keys=[keys.STATES], args=[name, state]))
        return result  # type: ignore[return-value]  # the script returns one of these

    async def leave(self, name: str, incarnation: int) -> bool:
        """Take ``name`` (stopping cleanly in ``incarnation``) out of the registry; False if it stays."""
        ks = [keys.STATES, keys.ALIVE, keys.NODES, keys.running(name)]
        return text(await self._leave(keys=ks, args=[name, str(incarnation)])) == "left"

    async def stale(self, lease_ms: int) -> list[str]:
        """Nodes silent for longer than ``lease_ms`` and not yet reaped."""
        return [text(n) for n in await self._stale(keys=[keys.ALIVE, keys.STATES], args=[lease_ms])]

    async def reap_node(self, name: str, lease_ms: int) -> list[Reaped]:
        """Declare ``name`` lost if it is still silent past ``lease_ms``, and settle each of its jobs."""
        ks = [keys.ALIVE, keys.STATES, keys.running(name)]
        args: list[EncodableT] = [name, lease_ms, keys.JOB_PREFIX, store_keys.JOB_NODES, store_keys.ALL_JOBS]
        flat = [text(x) for x in await self._reap_node(keys=ks, args=args)]
        return [Reaped(name, flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    async def lua_part(self, name: str) -> str:
        """The scripts' own escaping of ``name`` (for the test that holds it equal to ``keys.part``)."""
        return text(await self._part(keys=[], args=[name]))
