"""Many requests at once on one client connection: every caller gets its answer."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.redis


async def test_300_concurrent_starts_on_one_connection_all_return(client):
    # Enough at once that the socket's send buffer fills and senders wait for it to drain: each
    # waiting sender must be woken, not only the last (they used to hang, their jobs run).
    jobs = await asyncio.wait_for(asyncio.gather(*(client.start("true") for _ in range(300))), 60)
    assert len({job.id for job in jobs}) == 300
    done = await asyncio.wait_for(asyncio.gather(*(client.wait(job.id) for job in jobs)), 120)
    assert all(info.exit_code == 0 for info in done)
