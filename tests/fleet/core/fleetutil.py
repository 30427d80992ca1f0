"""Helpers for the fleet primitive tests."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from ccxd.fleet.entry import JobEntry
from ccxd.fleet.queue import FleetQueue
from ccxd.fleet.registry import NodeRegistry
from ccxd.protocol import StartParams
from ccxd.protocol.nodes import NodeInfo

_ids = itertools.count(1)


def mint() -> str:
    """A fresh job id (as a daemon's would be)."""
    return f"j{next(_ids):05d}"


def entry(job_id: str | None = None, **params: object) -> JobEntry:
    """A queue entry for ``echo hi`` with ``params``."""
    return JobEntry(
        job_id=job_id or mint(),
        params=StartParams(command="echo hi", **params),
        submitter="A",
        queued_at=time.time(),
    )


async def join(reg: NodeRegistry, name: str, labels: dict[str, str] | None = None) -> int:
    """``name`` joins the fleet (a heartbeat in a new incarnation); the incarnation."""
    inc = await reg.new_incarnation(name)
    assert await reg.heartbeat(NodeInfo(name=name, labels=labels or {}, incarnation=inc)) == "joined"
    return inc


def queue(r: aioredis.Redis, key: bytes) -> FleetQueue:
    return FleetQueue(r, key, mint_id=mint)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``check`` until true (Redis-time leases have no event to wait on); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
