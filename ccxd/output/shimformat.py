"""What ccxd-shim writes: its spool index records and the stream codes of its records and pipe frames.

The shim's C source (``ccxd/supervision/shim/ccxd-shim.c``) has its own
``#define`` of each; ``tests/protocol/test_shim_format.py`` checks that they agree.
Streams 0 and 1 are stdout and stderr (:data:`ccxd.protocol.STREAMS`).
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["CUT_STREAM", "DONE_STREAM", "EXIT_STREAM", "SPOOL_RECORD"]

SPOOL_RECORD: Final = struct.Struct("<QIB")
"""One index record (``RECORD``, 13 bytes): offset u64, length u32, stream u8, little endian."""
CUT_STREAM: Final = 255
"""The index record stream that marks where the shim cut the spool (``spool_max_bytes``)."""
EXIT_STREAM: Final = 254
"""The frame stream that carries the leader's exit status."""
DONE_STREAM: Final = 253
"""The frame stream with which a pooled shim says it is through with the job (no data)."""
