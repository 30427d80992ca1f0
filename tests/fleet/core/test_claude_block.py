"""The fleet-wide Claude usage-limit block on a real redis-server."""

from __future__ import annotations

import logging
import os
import time

import pytest
import redis.asyncio as aioredis

from ccxd.fleet import keys
from ccxd.fleet.claude_block import ClaudeBlock, current_block, publish_block

pytestmark = pytest.mark.redis


async def test_a_block_holds_every_node_until_it_ends_and_only_grows(
    r: aioredis.Redis, fleet_key: bytes
) -> None:
    assert await current_block(r, fleet_key) is None
    until = time.time() + 60
    first = ClaudeBlock(until, "usage limit", "B")
    assert await publish_block(r, fleet_key, first) == first
    assert await current_block(r, fleet_key) == first
    assert 55_000 < await r.pttl(keys.CLAUDE_BLOCK) <= 60_000
    shorter = ClaudeBlock(until - 30, "other", "C")
    assert await publish_block(r, fleet_key, shorter) == first  # a shorter block changes nothing
    longer = ClaudeBlock(until + 60, "longer", "C")
    assert await publish_block(r, fleet_key, longer) == longer
    assert await current_block(r, fleet_key) == longer
    assert await publish_block(r, fleet_key, ClaudeBlock(time.time() - 1)) == longer  # a past one neither


async def test_a_block_without_the_fleet_key_is_ignored(r: aioredis.Redis, fleet_key: bytes, caplog) -> None:
    caplog.set_level(logging.WARNING, "ccxd.fleet")
    await publish_block(r, os.urandom(32), ClaudeBlock(time.time() + 60, "forged"))
    assert await current_block(r, fleet_key) is None
    assert "not valid: ignored" in caplog.text
    # The real one replaces it.
    real = ClaudeBlock(time.time() + 30, "usage limit", "A")
    assert await publish_block(r, fleet_key, real) == real
    assert await current_block(r, fleet_key) == real
