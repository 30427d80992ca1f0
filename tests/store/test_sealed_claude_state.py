"""The Claude retry state in a real Redis: only what carries the daemon's MAC comes back (issue 19).

Whoever else writes to the Redis plays the attacker here with plain redis-py
commands, writing the structures ccxd writes.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from ccxd.protocol import StartParams
from ccxd.store import keys
from ccxd.store.ops import ClaudeState, PendingAttempt, SaveClaudeState
from ccxd.store.redis_store import RedisStore

KEY = b"k" * 32


def attempt(job_id: str, command: list[str]) -> PendingAttempt:
    params = StartParams(command=command, timeout=0)
    return PendingAttempt(job_id=job_id, params=params, base_params=params, attempt=2, retry_of="x1")


async def open_store(redis_server, key: bytes = KEY, node: str = "n1") -> RedisStore:  # type: ignore[no-untyped-def]
    store = RedisStore(redis_server.url, node, timeout=1.0, key=key)
    await store.open()
    return store


async def test_what_the_daemon_saved_comes_back_to_a_daemon_with_its_key(redis_server) -> None:  # type: ignore[no-untyped-def]
    one = await open_store(redis_server)
    until = time.time() + 60
    saved = ClaudeState(block_until=until, block_reason="usage limit", pending=[attempt("g1", ["true"])])
    assert await one.apply([SaveClaudeState(saved)]) == []
    await one.close()
    two = await open_store(redis_server)  # a restart: a new client, the same key
    assert await two.claude_state() == saved
    # Another key (another daemon, or a key file replaced) trusts none of it.
    stranger = await open_store(redis_server, key=b"s" * 32)
    assert await stranger.claude_state() == ClaudeState()
    await two.close()
    await stranger.close()


async def test_forged_attempts_and_block_are_left_out_and_said(redis_server, caplog) -> None:  # type: ignore[no-untyped-def]
    store = await open_store(redis_server)
    genuine = attempt("g1", ["true"])
    await store.apply([SaveClaudeState(ClaudeState(pending=[genuine]))])
    key = keys.claude_state("n1")
    stored: bytes = await store.redis.get(key)
    raw = json.loads(stored)
    forged_body = dict(raw["pending"][0]["body"])
    forged_body.update(job_id="evil", params={"command": ["touch", "/tmp/pwned"], "timeout": 0})
    forged = [
        {"body": forged_body},  # no MAC
        {"body": forged_body, "mac": "00" * 32},  # a made-up one
        {"body": forged_body, "mac": raw["pending"][0]["mac"]},  # the genuine one copied over
    ]
    block = {"body": {"block_until": time.time() + 86400, "block_reason": "forged"}, "mac": "11" * 32}
    # Spliced in, the genuine record's bytes untouched: {"type":…,"block":null,"pending":[…]}
    assert stored.endswith(b"]}") and b'"block":null' in stored
    stored = stored.replace(b'"block":null', b'"block":' + json.dumps(block).encode())
    await store.redis.set(key, stored[:-2] + b"," + json.dumps(forged)[1:-1].encode() + b"]}")
    with caplog.at_level(logging.WARNING, logger="ccxd.store"):
        state = await store.claude_state()
    assert state == ClaudeState(pending=[genuine])
    said = [r.getMessage() for r in caplog.records]
    assert said.count("pending attempt 'evil' in the store has no valid MAC: not run") == 3
    assert "the usage-limit block in the store has no valid MAC: ignored" in said
    await store.close()


@pytest.mark.parametrize("block", [None, 1e12])
async def test_the_unsealed_shape_of_older_versions_is_not_trusted(redis_server, caplog, block) -> None:  # type: ignore[no-untyped-def]
    store = await open_store(redis_server)
    legacy = ClaudeState(block_until=block, pending=[attempt("old", ["touch", "/tmp/pwned"])])
    import msgspec

    await store.redis.set(keys.claude_state("n1"), msgspec.json.encode(legacy))
    with caplog.at_level(logging.WARNING, logger="ccxd.store"):
        assert await store.claude_state() == ClaudeState()
    said = [r.getMessage() for r in caplog.records]
    assert "pending attempt 'old' in the store has no valid MAC: not run" in said
    assert ("the usage-limit block in the store has no valid MAC: ignored" in said) == (block is not None)
    await store.redis.set(keys.claude_state("n1"), b"\xff not json")
    assert await store.claude_state() == ClaudeState()
    await store.close()
