"""The store's own command packing sends exactly what redis-py's would."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import UnixDomainSocketConnection
from redis.exceptions import DataError

from ccxd.store.redis_store import _FastPacking


class Fast(_FastPacking, UnixDomainSocketConnection):
    pass


CASES = [
    (True, ("EVALSHA", "a" * 40, 2, "ccxd:job:n:1", b"raw\x00bytes", "ünïcode", 1.5, 0, -7, 1e-9, 1.25e8)),
    (True, ("EVALSHA", "sha", 1, "k", b"x" * 6001, "tail")),  # a long argument goes as its own piece
    (True, ("XADD", "ccxd:out", "5-0", "s", 1, "d", b"y" * 70000)),
    (True, ("PING",)),
    (False, ("SCRIPT LOAD", "return 1")),  # a name with a space: redis-py's packer splits it
]


@pytest.mark.parametrize(("ours", "args"), CASES)
def test_the_bytes_on_the_wire_are_redis_pys(ours: bool, args: tuple[object, ...]) -> None:
    fast, plain = Fast(path="/nonexistent"), UnixDomainSocketConnection(path="/nonexistent")
    if ours:
        fast.encoder = None  # type: ignore[assignment]  # the fast path needs no encoder
    assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))
    assert b"".join(fast.pack_commands([args, args])) == b"".join(plain.pack_commands([args, args]))


def test_what_redis_py_refuses_is_still_refused() -> None:
    fast = Fast(path="/nonexistent")
    with pytest.raises(DataError):
        fast.pack_command("SET", "k", True)
    with pytest.raises(DataError):
        fast.pack_command("SET", "k", None)
