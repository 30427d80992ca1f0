"""The scripts find keys with the same escaping as the store."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from ccxd.fleet import keys
from ccxd.fleet.scripts import Scripts
from ccxd.store.keys import part

NAMES = [
    "plain",
    "j00001",
    "with space",
    "colon:inside",
    "pct%41",
    "glob*?[x]",
    "{tag}",
    "back\\slash",
    "tab\there",
    "nul\x00",
    "del\x7f",
    "c1\x80\x9f",
    "é-ü",
    "ā-ő",
    "日本",
    "😀",
    "\u00a0nbsp",
    "\u0085nel",
]


@pytest.mark.redis
async def test_lua_part_equals_store_part(r: aioredis.Redis) -> None:
    scripts = Scripts(r)
    for name in NAMES:
        assert await scripts.lua_part(name) == part(name), repr(name)


def test_fleet_keys_live_under_the_prefix_and_escape_names() -> None:
    assert keys.job("a:b") == "ccxd:v1:fleet:job:a%3Ab"
    assert keys.pinned("n1") == "ccxd:v1:fleet:q:node:n1"
    assert keys.queue("high") == "ccxd:v1:fleet:q:high"
    assert keys.running("x y") == "ccxd:v1:fleet:running:x%20y"
    assert keys.control("B") == "ccxd:v1:fleet:ctl:B"
    assert keys.reply("r1") == "ccxd:v1:fleet:reply:r1"
    assert keys.JOB_PREFIX + part("a:b") == keys.job("a:b")
