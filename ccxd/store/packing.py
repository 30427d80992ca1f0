"""Packing the store's Redis commands faster than redis-py does (a mixin for its connection class)."""

from __future__ import annotations

from typing import Any

__all__ = ["FastPacking"]

_CUTOFF = 6000
"""Arguments longer than this go out as their own piece (as redis-py does): not copied into the command."""


class FastPacking:
    """redis-py's command packing for the store's own arguments, about three times faster.

    Every write is an EVALSHA whose arguments are text, bytes and numbers;
    redis-py's general packer (an encoder call and several joins per argument)
    was a tenth of the daemon's time per job.  Anything else goes to redis-py.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        """The command in the Redis protocol, as redis-py's ``pack_command`` makes it."""
        if not args or not isinstance(args[0], str) or " " in args[0]:
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]
        pieces: list[bytes] = []
        buf = [b"*%d\r\n" % len(args)]
        for arg in args:
            kind = type(arg)
            if kind is bytes:
                raw = arg
            elif kind is str:
                raw = arg.encode()
            elif kind is int:
                raw = b"%d" % arg
            elif kind is float:
                raw = repr(arg).encode()
            else:  # bool, None, memoryview, subclasses: redis-py's rules (and errors)
                return super().pack_command(*args)  # type: ignore[misc, no-any-return]
            if len(raw) > _CUTOFF:
                buf.append(b"$%d\r\n" % len(raw))
                pieces += (b"".join(buf), raw)
                buf = [b"\r\n"]
            else:
                buf += (b"$%d\r\n" % len(raw), raw, b"\r\n")
        pieces.append(b"".join(buf))
        return pieces
