"""A real daemon on a real Redis: a refused write and a full journal are reported, not hidden."""

from __future__ import annotations

import asyncio
import json
import time

from ccxd.store import keys
from tests.ccxctl.test_ccxctl import ccxctl

from .test_daemon_history import collect, history, wait_store
from .test_hostile_names import redis_cli


def status_json(daemon) -> dict:
    res = ccxctl(daemon, "status", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


async def wait_health(client, ready, timeout: float = 30.0):
    """Wait until ``ready(status.store_health)``; the daemon has no notification for it, so this polls."""
    deadline = time.monotonic() + timeout
    while True:
        status = await client.status()
        if ready(status.store_health):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"store health stayed {status.store_health}")
        await asyncio.sleep(0.05)


async def test_a_key_of_another_type_fails_that_write_only(daemon_factory, redis_server):
    d = daemon_factory(extra_env={"CCXD_REDIS_URL": redis_server.url, "CCXD_NODE_ID": "n1"})
    # Someone left a list where session "poisoned" keeps its record.
    redis_cli(redis_server, "RPUSH", keys.session("poisoned"), "not a hash")
    c = await d.client()
    _, victim, _ = await collect(c, "echo victim", session="poisoned")
    _, bystander, _ = await collect(c, "echo bystander", session="fine")
    status = await wait_health(c, lambda h: h.refused > 0)
    assert status.store == "redis"  # not degraded: Redis answers
    assert status.store_health.journal_dropped == 0
    assert keys.session("poisoned") in (status.store_health.last_refused or "")
    assert "WRONGTYPE" in (status.store_health.last_refused or "")
    # Every later write lands: the job records, output and the other session.
    _, after, _ = await collect(c, "echo after")
    stored = {j.id for j in await history(c, limit=10)}
    assert {victim.id, bystander.id, after.id} <= stored
    assert b"".join(ch.raw() for ch in (await c.read(after.id)).chunks) == b"after\n"
    await c.close()
    assert f"the store refused the record of job {victim.id}" in d.log()
    assert keys.session("poisoned") in d.log()
    shown = ccxctl(d, "status").stdout.decode()
    assert "refused" in shown and "store writes; last:" in shown and keys.session("poisoned") in shown


async def test_a_full_journal_says_so_in_status_and_log(daemon_factory, redis_server):
    env = {"CCXD_REDIS_URL": redis_server.url, "CCXD_STORE_TIMEOUT": "0.5", "CCXD_JOURNAL_MAX_BYTES": "8192"}
    d = daemon_factory(extra_env=env)
    c = await d.client()
    redis_server.kill()
    for i in range(10):
        await collect(c, f"head -c 3000 /dev/zero; echo job {i}", timeout=60)
    status = await wait_health(c, lambda h: h.journal_full)
    assert status.store.startswith("redis: degraded (") and "journal full" in status.store
    dropped = status.store_health.journal_dropped
    assert dropped > 0 and 0 < status.store_health.journal_bytes <= 8192
    shown = ccxctl(d, "status").stdout.decode()
    assert "journal full" in shown and "writes dropped" in shown
    log = d.log()
    assert "store journal full (journal_max_bytes = 8192" in log
    assert log.count("store journal full") == 1  # said once, not once per write

    redis_server.start()
    await wait_store(c, "redis")
    after = status_json(d)["store_health"]
    assert not after["journal_full"] and after["journal_dropped"] >= dropped
    await c.close()
