"""WebSocket frame headers the daemon writes itself (RFC 6455 §5.2; no I/O).

Output frames are the daemon's bulk traffic.  Building their header here lets
the transport hand the header and the chunks' own ``bytes`` to the kernel in
one ``writev`` (``transport.writelines``), where the ``websockets`` library
would first copy each chunk into a frame of its own.  Server frames are never
masked; every other frame (replies, pings, close) still goes through the
library.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["OP_BINARY", "OP_TEXT", "frame_header"]

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
_FIN: Final = 0x80
_LEN16: Final = struct.Struct("!BBH")
_LEN64: Final = struct.Struct("!BBQ")


def frame_header(opcode: int, length: int) -> bytes:
    """The header of one whole (FIN), unmasked server frame carrying ``length`` payload bytes."""
    if not 0 <= length < 1 << 63:
        raise ValueError(f"payload length {length} out of range")
    first = _FIN | opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return _LEN16.pack(first, 126, length)
    return _LEN64.pack(first, 127, length)
