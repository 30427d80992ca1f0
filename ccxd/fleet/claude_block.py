"""A usage limit that holds every node's Claude jobs: one sealed key that expires when the limit resets.

When one node's Claude job hits a usage limit, every node would hit it too: the
node publishes the block (until when, why) and no node starts Claude jobs until
the key expires.  The value is sealed with the fleet key (context
``fleet:claude-block``): whoever else writes to the Redis cannot hold the fleet's
Claude jobs.  A block only ever grows longer.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis

from ccxd.fleet import keys
from ccxd.fleet.entry import BadSeal, open_sealed, seal_bytes

__all__ = ["ClaudeBlock", "current_block", "publish_block"]

log = logging.getLogger("ccxd.fleet")

_CONTEXT: Final = "fleet:claude-block"


class ClaudeBlock(msgspec.Struct, frozen=True):
    """No node starts a Claude job before ``until`` (epoch seconds)."""

    until: float
    reason: str | None = None
    node: str = ""
    """The node that hit the limit."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ClaudeBlock)


async def current_block(redis: aioredis.Redis, key: bytes) -> ClaudeBlock | None:
    """The fleet's block in force (None when none, expired, or not sealed with the fleet key: logged)."""
    raw: Any = await redis.get(keys.CLAUDE_BLOCK)
    if raw is None:
        return None
    try:
        block = _decoder.decode(open_sealed(key, _CONTEXT, raw))
    except (BadSeal, msgspec.DecodeError) as exc:
        log.warning("the fleet's Claude usage-limit block is not valid: ignored (%s)", exc)
        return None
    return block if block.until > time.time() else None


async def publish_block(redis: aioredis.Redis, key: bytes, block: ClaudeBlock) -> ClaudeBlock:
    """Hold every node's Claude jobs until ``block.until`` (unless a longer block holds already).

    Returns the block in force afterwards.  The key expires when the block ends.
    """
    current = await current_block(redis, key)
    if current is not None and current.until >= block.until:
        return current
    ttl_ms = int((block.until - time.time()) * 1000)
    if ttl_ms <= 0:
        return current or block
    await redis.set(keys.CLAUDE_BLOCK, seal_bytes(key, _CONTEXT, _encoder.encode(block)), px=ttl_ms)
    return block
