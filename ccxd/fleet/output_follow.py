"""Follow a job's output as the store keeps it in Redis: what a node reads of a job another node runs.

The store writes a job's output as one stream whose entry ids are ``offset+1-0``
(``store.keys.output``), so the chunk holding a byte offset is the last entry at
or before ``offset+1-0``: following starts there, cut at the offset, goes on in
entry order and then waits (``XREAD BLOCK``) for more.  A job's record is
written after its last output chunk by the same writer, so once the record says
finished, what the stream holds after one more read is all of it.

``XREAD BLOCK`` holds its connection: give it a client whose pool may open one
of its own, not the store's single shared one, with a socket timeout longer than
``block_ms``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import redis.asyncio as aioredis

from ccxd.fleet.scripts import text
from ccxd.store import keys as store_keys

__all__ = ["follow_output"]

_PAGE: Final = 64


async def follow_output(
    redis: aioredis.Redis,
    node: str,
    job_id: str,
    offset: int,
    finished: Callable[[], Awaitable[bool]],
    *,
    block_ms: int = 1000,
) -> AsyncIterator[tuple[int, int, bytes]]:
    """``(offset, stream, data)`` of ``job_id``'s output (run on ``node``) from byte ``offset`` on.

    ``stream`` is the stored code (0 stdout, 1 stderr).  Every byte from ``offset``
    comes once, in order; it ends once ``finished()`` says the job's record is
    finished and the stream holds nothing more.  ``finished`` is asked each time
    the stream has nothing new, before waiting up to ``block_ms`` for more.
    """
    key = store_keys.output(node, job_id)
    pos = offset
    first: Any = await redis.xrevrange(key, max=f"{offset + 1}-0", count=1)
    last = "0-0"
    if first:
        entry_id, fields = first[0]
        last = text(entry_id)
        start = int(last.split("-")[0]) - 1
        data = bytes(fields[b"d"])
        if start + len(data) > offset:
            yield offset, int(fields[b"s"]), data[offset - start :]
        pos = max(pos, start + len(data))
    done = False
    while True:
        entries: Any = await redis.xrange(key, min=f"({last}", count=_PAGE)
        if not entries:
            if done:
                return
            # Asked before the next read: a record that says finished was written after its last chunk.
            done = await finished()
            if done:
                continue
            got: Any = await redis.xread({key: last}, count=_PAGE, block=block_ms)
            entries = got[0][1] if got else []
        for entry_id, fields in entries:
            last = text(entry_id)
            start = int(last.split("-")[0]) - 1
            data = bytes(fields[b"d"])
            if start + len(data) <= pos:
                continue  # before the offset asked for
            cut = max(0, pos - start)
            yield start + cut, int(fields[b"s"]), data[cut:]
            pos = start + len(data)
