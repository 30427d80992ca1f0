"""The protocol's names and layouts as plain constants, for a client that cannot afford msgspec (no I/O).

``ccxctl run``'s fast path starts in about the time Python itself takes, and
importing msgspec and :mod:`ccxd.protocol` would cost more than its whole job.
So it speaks the protocol with the standard library's ``json``, with the names
below.  :mod:`ccxd.protocol` stays the one definition of every message: this
module only repeats what the fast path needs, and ``tests/protocol/test_wire.py``
checks each entry against the Structs there.  It lives outside the protocol
package because importing anything inside it runs that package's ``__init__``,
which builds every Struct.
"""

from __future__ import annotations

import struct

__all__ = [
    "HOOK_PREFIX",
    "INVALID_PARAMS",
    "JOB_CANCEL",
    "JOB_FINISHED",
    "JOB_OUTPUT",
    "JOB_RETRY",
    "JOB_START",
    "JOB_SUBSCRIBE",
    "JSONRPC_VERSION",
    "LABEL_PATTERN",
    "MAX_LABELS",
    "NODE_NAME_PATTERN",
    "OUTPUT_FRAME_HEAD",
    "OUTPUT_FRAME_MAGIC",
    "STREAMS",
    "TIMEOUT_EXIT_CODE",
    "output_frame_data",
    "shell_exit_code",
]

JSONRPC_VERSION = "2.0"

# Methods (ccxd.protocol.METHODS).
JOB_START = "job.start"
JOB_SUBSCRIBE = "job.subscribe"
JOB_CANCEL = "job.cancel"

# Notifications (ccxd.protocol.NOTIFICATIONS).
JOB_OUTPUT = "job.output"
JOB_FINISHED = "job.finished"
JOB_RETRY = "job.retry"
HOOK_PREFIX = "hook."
"""Every hook notification's method starts so (``hook.pre_execution`` …)."""

INVALID_PARAMS = -32602
"""ErrorCode.INVALID_PARAMS: params the daemon refused."""

TIMEOUT_EXIT_CODE = 124
"""What a job that hit its timeout exits with, as under ``timeout(1)``."""

STREAMS = ("stdout", "stderr")
"""Stream names by their code in a binary output frame."""

OUTPUT_FRAME_MAGIC = 0x01
OUTPUT_FRAME_HEAD = struct.Struct("<BBQQH")
"""A binary output frame's fixed head: magic, stream, seq, offset, job id length (then id, data)."""

NODE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
LABEL_PATTERN = r"^[A-Za-z0-9_.-]{1,63}$"
MAX_LABELS = 32


def shell_exit_code(reason: str | None, exit_code: int | None, signal: int | None) -> int | None:
    """A finished job's status as a shell reports it: 124 for a timeout, 128+N for signal N, else its code.

    None when there is none (the job never ran).
    """
    if reason in ("timeout", "idle_timeout"):
        return TIMEOUT_EXIT_CODE
    if signal is not None:
        return 128 + signal
    return exit_code


def output_frame_data(frame: bytes | bytearray) -> tuple[int, memoryview]:
    """A binary output frame's stream code and its output bytes (a view, not a copy).

    ValueError when ``frame`` is not an output frame.
    """
    if len(frame) < OUTPUT_FRAME_HEAD.size:
        raise ValueError(f"binary frame too short: {len(frame)} bytes")
    magic, code, _, _, n = OUTPUT_FRAME_HEAD.unpack_from(frame)
    start = OUTPUT_FRAME_HEAD.size + n
    if magic != OUTPUT_FRAME_MAGIC or code > 1 or len(frame) < start:
        raise ValueError(f"not an output frame: {bytes(frame[:start])[:40]!r}")
    return code, memoryview(frame)[start:]
