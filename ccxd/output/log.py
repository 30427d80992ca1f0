"""A job's output log: recent chunks in memory, everything in the spool (no I/O of its own).

The reader of a job's pipes calls :meth:`OutputLog.append`; any number of
subscribers read by sequence number at their own pace.  Nobody waits for a
subscriber: a slow one that falls out of the memory buffer reads from the spool,
and only output that is in neither is reported to it as a gap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ccxd.output.spool import Spool
from ccxd.protocol import STREAMS

__all__ = ["STREAMS", "Chunk", "OutputLog"]


class Chunk:
    """One chunk of output; ``wire`` caches its encoded notification for fan-out.

    A chunk taken in from a spool someone else wrote (the job's shim) may
    arrive without its bytes: they are read from the spool the first time
    :attr:`data` is asked for, so output nobody reads from memory (a
    subscriber that fell behind reads it from the spool anyway) is never
    copied into the daemon.
    """

    __slots__ = ("_data", "_spool", "length", "offset", "seq", "stream", "wire")

    def __init__(
        self,
        seq: int,
        stream: int,
        offset: int,
        data: bytes | None,
        length: int = -1,
        spool: Spool | None = None,
    ) -> None:
        self.seq = seq
        self.stream = stream
        self.offset = offset
        self._data = data
        self.length = len(data) if data is not None else length
        self._spool = spool  # where the bytes are, while they are not read yet
        self.wire: bytes | None = None

    @property
    def data(self) -> bytes:
        """The chunk's bytes (read from the spool once, if they were not given).

        Raises OSError when they cannot be read any more (the spool was removed).
        """
        data = self._data
        if data is None:
            assert self._spool is not None
            data = self._spool.read_at(self.offset, self.length)
            self._data, self._spool = data, None
        return data

    def load(self) -> bool:
        """Make sure :attr:`data` is in memory; False if it cannot be read."""
        if self._data is not None:
            return True
        try:
            self.data  # noqa: B018 - reads and keeps the bytes
        except OSError:
            return False
        return True

    @property
    def end(self) -> int:
        """Combined offset just past this chunk."""
        return self.offset + self.length


class OutputLog:
    """Append-only, sequence-numbered output of one job."""

    def __init__(self, memory_limit: int, spool: Spool | None = None) -> None:
        self.memory_limit = memory_limit
        self.spool = spool
        self._ring: list[Chunk] = []
        self._head = 0  # index of the oldest live chunk in _ring
        self._ring_bytes = 0
        self.next_seq = 0
        self.size = 0
        self.stream_bytes = [0, 0]
        self.closed = False
        self._listeners: list[Callable[[], None]] = []

    # -- writing ------------------------------------------------------------

    def append(self, stream: int, data: bytes) -> Chunk:
        """Record ``data`` read from ``stream`` (0 stdout, 1 stderr)."""
        chunk = Chunk(self.next_seq, stream, self.size, data)
        if self.spool is not None:
            self.spool.append(chunk.offset, stream, data)
        self.next_seq += 1
        self.size += len(data)
        self.stream_bytes[stream] += len(data)
        self._ring.append(chunk)
        self._ring_bytes += len(data)
        self._evict()
        self._notify()
        return chunk

    def append_spooled(self, stream: int, length: int) -> Chunk:
        """Record a chunk of ``length`` bytes that is in the spool already; its bytes are read when needed."""
        assert self.spool is not None
        chunk = Chunk(self.next_seq, stream, self.size, None, length, self.spool)
        self.spool.count(length)
        self.next_seq += 1
        self.size += length
        self.stream_bytes[stream] += length
        self._ring.append(chunk)
        self._ring_bytes += length
        self._evict()
        self._notify()
        return chunk

    def resume_at(self, records: int, size: int, stream_bytes: list[int]) -> None:
        """Start after output already in the spool (a job adopted from an earlier daemon)."""
        self.next_seq = records
        self.size = size
        self.stream_bytes = list(stream_bytes)

    def close(self) -> None:
        """No more output will come."""
        self.closed = True
        if self.spool is not None:
            self.spool.close_writer()
        self._notify()

    def release_memory(self) -> bool:
        """Drop the memory ring of a closed log whose spool holds every chunk; True if dropped.

        Finished jobs stay in memory for ``finished_jobs_kept``; without this each
        would pin up to ``memory_limit`` of output.  Later reads come from the
        spool.  The owner calls it once nobody follows the job any more.
        """
        if not self.closed or self.spool is None or self.spool.cut or self.spool.records != self.next_seq:
            return False
        self._ring = []
        self._head = 0
        self._ring_bytes = 0
        return True

    def _drop_through(self, seq: int) -> None:
        ring = self._ring
        last = self._head + seq - self.first_memory_seq
        while self._head <= last and len(ring) - self._head > 0:
            self._ring_bytes -= ring[self._head].length
            ring[self._head] = None  # type: ignore[call-overload]
            self._head += 1

    def _evict(self) -> None:
        ring = self._ring
        while self._ring_bytes > self.memory_limit and len(ring) - self._head > 1:
            self._ring_bytes -= ring[self._head].length
            ring[self._head] = None  # type: ignore[call-overload]
            self._head += 1
        if self._head > 1024 and self._head * 2 > len(ring):
            del ring[: self._head]
            self._head = 0

    # -- reading ------------------------------------------------------------

    @property
    def first_memory_seq(self) -> int:
        """Sequence number of the oldest chunk still in memory."""
        return self.next_seq - (len(self._ring) - self._head)

    @property
    def cut(self) -> bool:
        """True when output stopped being kept on disk."""
        return self.spool is not None and self.spool.cut

    def get(self, seq: int) -> Chunk | None:
        """Chunk ``seq`` from memory or spool; None if it is in neither."""
        first = self.first_memory_seq
        if seq >= first:
            if seq >= self.next_seq:
                return None
            chunk = self._ring[self._head + seq - first]
            if not chunk.load():
                # Its spool is gone (the job was retired while followed): so are the
                # bytes of every older chunk not read yet.  Dropping them from memory
                # lets readers report the gap and go on.
                self._drop_through(seq)
                return None
            return chunk
        if self.spool is None:
            return None
        found = self.spool.read(seq)
        if found is None:
            return None
        (offset, _length, stream), data = found
        return Chunk(seq, stream, offset, data)

    def seq_at(self, offset: int) -> int:
        """The first chunk whose bytes end after ``offset``.

        When ``offset`` lies in lost output (evicted from memory and not in the
        spool), the answer is the first lost chunk: :meth:`get` returns None for
        it, so a reader starting there reports the gap before continuing.
        """
        first = self.first_memory_seq
        if first < self.next_seq and self._ring[self._head].offset <= offset:
            lo, hi = self._head, len(self._ring)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._ring[mid].end > offset:
                    hi = mid
                else:
                    lo = mid + 1
            return first + (lo - self._head)
        if self.spool is not None and self.spool.records:
            seq = self.spool.seq_at(offset)
            if seq < self.spool.records:
                return seq
        if offset >= self.size:
            return self.next_seq
        lost = self.spool.records if self.spool is not None else 0
        return min(lost, first)

    def available_offset(self, seq: int) -> int:
        """Offset of chunk ``seq`` or, when it is lost, of the next available one."""
        chunk = self.get(seq)
        if chunk is not None:
            return chunk.offset
        # Lost output lies between the end of the spool and the oldest chunk in memory.
        if seq < self.first_memory_seq < self.next_seq:
            return self._ring[self._head].offset
        return self.size

    # -- waiting ------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every append and on close."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _notify(self) -> None:
        for cb in self._listeners:
            cb()
