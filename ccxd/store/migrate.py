"""Moves the keys of names written before key components were escaped (``keys.part``).

Plain names keep their keys, so a store of an older release reads as it is;
only a session or node whose name holds ``:``, ``%``, a space, a control, glob
or brace character had its keys under the raw name.  Those are renamed once, on
the first open by this release, and a marker key says it was done.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from ccxd.store import keys

__all__ = ["escape_names"]

log = logging.getLogger("ccxd.store")

_PAGE = 500


async def escape_names(redis: aioredis.Redis, node: str) -> int:
    """Rename the old keys of names that :func:`keys.part` changes; return how many moved."""
    if await redis.exists(keys.NAMES_ESCAPED):
        return 0
    sessions = []
    async for name, _ in redis.zscan_iter(keys.SESSIONS, count=_PAGE):
        text = name.decode()
        if keys.part(text) != text:
            sessions.append(text)
    nodes: dict[str, list[str]] = {node: []} if keys.part(node) != node else {}
    async for job_id, owner in redis.hscan_iter(keys.JOB_NODES, count=_PAGE):
        text = owner.decode()
        if keys.part(text) != text:
            nodes.setdefault(text, []).append(job_id.decode())
    renames = keys.legacy_renames(sessions, nodes)
    moved = 0
    for start in range(0, len(renames), _PAGE):
        page = renames[start : start + _PAGE]
        pipe = redis.pipeline(transaction=False)
        for old, _, _ in page:
            pipe.type(old)
        types = await pipe.execute()
        pipe = redis.pipeline(transaction=False)
        # An old key of another type held another name's value (the collision escaping ends): left.
        for (old, new, kind), have in zip(page, types, strict=True):
            if have.decode() == kind:
                pipe.renamenx(old, new)
        moved += sum(1 for done in await pipe.execute() if done)
    await redis.set(keys.NAMES_ESCAPED, "1")
    if moved:
        log.info("renamed %d keys of session or node names with escaped characters", moved)
    return moved
