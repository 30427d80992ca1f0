"""Server-side scripts that write one store operation each (Redis Lua, run by EVALSHA).

A job's record touches five to nine keys and a finished run's statistics
another nine; as single commands that was about thirteen commands per job, and
redis-py's packing and reply parsing (tens of microseconds per command) was a
large part of the daemon's time per job.  Each script does exactly the
commands the plain path does (``redis_store.RedisStore._save_job`` and the
others), in one command.  A Redis that lost its scripts (a restart) answers
NOSCRIPT without running anything, and the store loads them and sends again.
"""

from __future__ import annotations

import hashlib

__all__ = ["FENCED_APPEND", "FENCED_SAVE_JOB", "RECORD_DURATION", "RECORD_METRIC", "SAVE_JOB", "Script"]


class Script:
    """A Lua script and its SHA1 (what EVALSHA names it by)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


SAVE_JOB = Script(
    """
-- KEYS: job, job-node, all jobs, node jobs, node active[, session, session jobs, sessions]
-- ARGV: record, id, node, member, queued_at, finished (1/0)[, last_active, session]
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
if ARGV[6] == '1' then
  redis.call('SREM', KEYS[5], ARGV[2])
else
  redis.call('SADD', KEYS[5], ARGV[2])
end
if #KEYS > 5 then
  redis.call('HSETNX', KEYS[6], 'created', ARGV[5])
  redis.call('HSET', KEYS[6], 'last_active', ARGV[7])
  redis.call('ZADD', KEYS[7], ARGV[5], ARGV[4])
  redis.call('ZADD', KEYS[8], 'GT', ARGV[7], ARGV[8])
end
return 1
"""
)

RECORD_DURATION = Script(
    """
-- KEYS: durations, signatures, signatures seen.  ARGV: sample, kept, signature hash, signature, time
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
return 1
"""
)

RECORD_METRIC = Script(
    """
-- KEYS: metrics of the signature, metrics index, signatures seen.
-- ARGV: signature, duration, reason field, exit field ('' for none), signature hash, time
redis.call('HSET', KEYS[1], 'signature', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HINCRBYFLOAT', KEYS[1], 'duration_sum', ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[1], ARGV[4], 1)
end
redis.call('ZINCRBY', KEYS[2], 1, ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
return 1
"""
)

# A fleet job's writes (docs/fleet-design.md): only while the job's hash still holds the
# writer's epoch; a node declared lost (its epoch moved on) writes nothing more.
_FENCE = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
"""

FENCED_SAVE_JOB = Script(
    """
-- KEYS: fleet job hash, then SAVE_JOB's.  ARGV: epoch, then SAVE_JOB's.  0: fenced, nothing written.
"""
    + _FENCE
    + "table.remove(KEYS, 1)\ntable.remove(ARGV, 1)\n"
    + SAVE_JOB.source
)

FENCED_APPEND = Script(
    """
-- KEYS: fleet job hash, output stream.  ARGV: epoch, entry id, stream code, data.  0: fenced.
"""
    + _FENCE
    + """redis.call('XADD', KEYS[2], ARGV[2], 's', ARGV[3], 'd', ARGV[4])
return 1
"""
)

ALL = (SAVE_JOB, RECORD_DURATION, RECORD_METRIC, FENCED_SAVE_JOB, FENCED_APPEND)
