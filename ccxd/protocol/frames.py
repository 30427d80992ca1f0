"""The binary WebSocket output frame: ``job.output`` without JSON."""

from __future__ import annotations

import base64
import struct
from typing import Final, NamedTuple

from ccxd.protocol.common import STREAM_CODES, STREAMS, Encoding, Stream
from ccxd.protocol.jobs import OutputChunk

__all__ = [
    "OUTPUT_FRAME_HEADER_SIZE",
    "OUTPUT_FRAME_MAGIC",
    "OutputFrame",
    "decode_output_frame",
    "decode_output_frame_sized",
    "encode_output_frame",
    "output_frame_head",
    "unpack_output_frame",
]

OUTPUT_FRAME_MAGIC: Final = 0x01
_OUTPUT_FRAME_HEAD: Final = struct.Struct("<BBQQH")
OUTPUT_FRAME_HEADER_SIZE: Final = _OUTPUT_FRAME_HEAD.size  # 20


class OutputFrame(NamedTuple):
    """One binary output frame, decoded: the raw bytes, no text round trip."""

    job_id: str
    stream: Stream
    seq: int
    offset: int
    data: bytes


def encode_output_frame(job_id: str, stream: int | Stream, seq: int, offset: int, data: bytes) -> bytes:
    """A binary WebSocket frame carrying one output chunk (``job.output`` without JSON).

    Sent instead of ``job.output`` notifications to subscribers that asked for
    ``binary: true`` (``job.start`` with ``subscribe``, or ``job.subscribe``).
    All integers are little endian::

        offset  size  field
        0       1     magic, 0x01 (a JSON text frame never starts with it)
        1       1     stream: 0 = stdout, 1 = stderr
        2       8     seq, u64: the chunk's sequence number in the job's output
        10      8     offset, u64: combined byte offset of data[0] (as in job.output)
        18      2     n, u16: length of the job id
        20      n     job id, ASCII
        20+n    rest  the output bytes, exactly as the job wrote them

    Every other message (replies, ``job.started``, ``job.finished``, gaps)
    stays a JSON text frame, in order with the binary frames.
    """
    return output_frame_head(job_id, stream, seq, offset) + data


def output_frame_head(job_id: str, stream: int | Stream, seq: int, offset: int) -> bytes:
    """The first ``20 + len(job_id)`` bytes of :func:`encode_output_frame`'s frame (the data follows)."""
    code = stream if isinstance(stream, int) else STREAM_CODES[stream]
    ident = job_id.encode("ascii")
    return _OUTPUT_FRAME_HEAD.pack(OUTPUT_FRAME_MAGIC, code, seq, offset, len(ident)) + ident


def unpack_output_frame(frame: bytes) -> OutputFrame:
    """Decode :func:`encode_output_frame`'s layout; ValueError if ``frame`` is not one."""
    job_id, code, seq, offset, end = _output_frame_head(frame)
    return OutputFrame(job_id, STREAMS[code], seq, offset, bytes(frame[end:]))


def _output_frame_head(frame: bytes | bytearray) -> tuple[str, int, int, int, int]:
    """(job id, stream code, seq, offset, where the data starts); ValueError if not an output frame."""
    if len(frame) < OUTPUT_FRAME_HEADER_SIZE:
        raise ValueError(f"binary frame too short: {len(frame)} bytes")
    magic, code, seq, offset, n = _OUTPUT_FRAME_HEAD.unpack_from(frame)
    if magic != OUTPUT_FRAME_MAGIC:
        raise ValueError(f"not an output frame (magic byte {magic:#04x})")
    if code > 1:
        raise ValueError(f"unknown stream code {code}")
    end = OUTPUT_FRAME_HEADER_SIZE + n
    if len(frame) < end:
        raise ValueError("binary frame shorter than its job id")
    return bytes(frame[OUTPUT_FRAME_HEADER_SIZE:end]).decode("ascii"), code, seq, offset, end


def decode_output_frame(frame: bytes | bytearray) -> OutputChunk:
    """A binary output frame as the :class:`OutputChunk` a ``job.output`` would carry."""
    return decode_output_frame_sized(frame)[0]


def decode_output_frame_sized(frame: bytes | bytearray) -> tuple[OutputChunk, int]:
    """:func:`decode_output_frame` and the number of output bytes the frame carried.

    The output is decoded straight from the frame (no intermediate ``bytes``):
    for a client this is the one copy of each byte it has to make.
    """
    job_id, code, seq, offset, end = _output_frame_head(frame)
    encoding: Encoding = "utf-8"
    with memoryview(frame) as view:
        raw = view[end:]
        try:
            data = str(raw, "utf-8")
        except UnicodeDecodeError:
            data, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        size = len(raw)
        raw.release()
    chunk = OutputChunk(
        job_id=job_id,
        stream=STREAMS[code],
        seq=seq,
        offset=offset,
        data=data,
        encoding=encoding,
    )
    return chunk, size
