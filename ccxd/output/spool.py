"""A job's full output on disk: one data file and one fixed-width index file.

``<job>.out`` holds the output bytes in the order they were read (stdout and
stderr interleaved), so a combined offset is a file position.  ``<job>.idx``
holds one 13-byte record per chunk (offset, length, stream), so chunk ``seq`` is
record ``seq`` and an offset is found by binary search.  Writes are gathered
into blocks before ``os.write``: on the machines we measured, a 64 KiB file
write costs ten times more per byte than a 1 MiB one, and the spool must never
be what slows a job down.  A block is written when it reaches 1 MiB, when an
append comes more than ``FLUSH_INTERVAL`` after the last write (so slow output
is on disk at once), or when the owner calls :meth:`Spool.flush` (the
supervisor does so ``FLUSH_INTERVAL`` after a burst).  A read of a record still
in the block flushes it first.  A failed write (disk full) cuts the spool instead of failing
the job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ccxd.output.shimformat import SPOOL_RECORD as _RECORD

__all__ = ["Spool", "SpoolRecord", "read_spool", "remove_spool", "spooled_jobs"]

log = logging.getLogger("ccxd.output")

_FLUSH_AT = 1024 * 1024
_BORROWERS_MAX = 4
_INDEX_BLOCK = 256
"""Index records read at once by a reader (3,328 bytes)."""
"""Finished spools that may hold their read descriptors between reads at once (LRU)."""
_BORROW_IDLE = 1.0
"""Seconds after its last read that a spool gives its borrowed descriptors back (a reader that left)."""
_borrowers: dict[Spool, float] = {}
"""Spools holding borrowed read descriptors, least recently read first, with the time of that read."""
_sweeping = False


def _sweep() -> None:
    """Give back what readers that stopped half way left borrowed; again later while some remain."""
    global _sweeping
    idle = time.monotonic() - _BORROW_IDLE
    for spool in [s for s, last in _borrowers.items() if last <= idle]:
        spool._give_back()
    _sweeping = False
    _arm_sweep()


def _arm_sweep() -> None:
    global _sweeping
    if _sweeping or not _borrowers:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop (a tool, a test): the least recently read give them back to newer ones
    _sweeping = True
    loop.call_later(_BORROW_IDLE, _sweep)


FLUSH_INTERVAL = 0.01
"""Seconds a burst of output may wait in memory before it is written."""
SpoolRecord = tuple[int, int, int]
"""(offset, length, stream) of one chunk; stream 0 is stdout, 1 is stderr."""


class Spool:
    """Append-only output files of one job, capped at ``limit`` bytes."""

    def __init__(self, directory: Path, job_id: str, limit: int) -> None:
        self.data_path = directory / f"{job_id}.out"
        self.index_path = directory / f"{job_id}.idx"
        self.limit = limit
        self.records = 0
        self.size = 0
        self.flushed_records = 0
        self._last_flush = 0.0
        self._data_buf = bytearray()
        self._index_buf = bytearray()
        self.cut = False
        self.error: str | None = None
        # The files are created with the first chunk: a job that writes nothing
        # costs no files (creating one is the dearest part of starting a job on
        # some disks) and no descriptors.
        self._data_w: int | None = None
        self._index_w: int | None = None
        self._data_r = self._index_r = -1
        self._writing = True
        self._finished = False  # the writer is closed: reads open the files (or borrow them)
        self._retired = False  # closed for good: reads open the files for the one read
        self._block = b""  # index records read ahead for a reader going through them in order
        self._block_first = 0
        self.created = False
        """True once the files exist (seen or made here); a spool that never had any needs no removal."""

    def _open(self) -> bool:
        """Create the files; on failure cut the spool (the job keeps its memory ring)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        opened: list[int] = []
        try:
            for path, mode in (
                (self.data_path, flags),
                (self.index_path, flags),
                (self.data_path, os.O_RDONLY | os.O_CLOEXEC),
                (self.index_path, os.O_RDONLY | os.O_CLOEXEC),
            ):
                opened.append(os.open(path, mode, 0o600))
        except OSError as exc:
            for fd in opened:
                os.close(fd)
            self._writing = False
            self.cut = True
            self.error = f"cannot create the spool: {exc.strerror or exc}"
            log.warning("spool %s cut: %s", self.data_path.name, self.error)
            return False
        self._data_w, self._index_w, self._data_r, self._index_r = opened
        self.created = True
        return True

    def append(self, offset: int, stream: int, data: bytes) -> bool:
        """Store one chunk; False once the spool is cut (full or failing)."""
        if self.cut or not self._writing:
            return False
        if self.size + len(data) > self.limit:
            self._cut(None)
            return False
        if self._data_w is None and not self._open():
            return False
        self._data_buf += data
        self._index_buf += _RECORD.pack(offset, len(data), stream)
        self.records += 1
        self.size += len(data)
        if len(self._data_buf) >= _FLUSH_AT or time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            return self.flush()
        return True

    @property
    def pending(self) -> bool:
        """True while appended chunks wait in memory for the next write."""
        return bool(self._index_buf)

    def flush(self) -> bool:
        """Write the gathered block; False (and the spool cut) if the write failed."""
        if not self._index_buf or self._data_w is None or self._index_w is None:
            return not self.cut
        try:
            _write_all(self._data_w, self._data_buf)
            _write_all(self._index_w, self._index_buf)
        except OSError as exc:
            # What the block held is not on disk: the spool ends where it was last complete.
            self.size -= len(self._data_buf)
            self.records = self.flushed_records
            # New buffers: the failed write's traceback may still hold a view of the old ones.
            self._data_buf, self._index_buf = bytearray(), bytearray()
            self._cut(f"{exc.strerror or exc}")
            return False
        self._data_buf, self._index_buf = bytearray(), bytearray()
        self.flushed_records = self.records
        self._last_flush = time.monotonic()
        return True

    def _cut(self, error: str | None) -> None:
        if error is None and not self.flush():
            return  # the failed flush already cut the spool, with its error
        self.cut = True
        self.error = error
        if error:
            log.warning("spool %s cut: %s", self.data_path.name, error)
        self.close_writer()

    def record(self, seq: int) -> SpoolRecord | None:
        """The index record of chunk ``seq``, if the spool has it."""
        if seq < 0 or seq >= self.records:
            return None
        if seq >= self.flushed_records:
            self.flush()
            if seq >= self.records:
                return None
        return self._indexed(seq, self.flushed_records)

    def _indexed(self, seq: int, known: int) -> SpoolRecord | None:
        """Record ``seq`` of the ``known`` ones on disk, read ``_INDEX_BLOCK`` records at a time.

        Records on disk never change, and readers go through them in order: one
        read of the index per block instead of one per chunk.
        """
        size = _RECORD.size
        i = seq - self._block_first
        if not 0 <= i < len(self._block) // size:
            count = min(_INDEX_BLOCK, known - seq)
            self._block = _pread(self._index_r, self.index_path, size * count, seq * size)
            self._block_first, i = seq, 0
            if len(self._block) < size:
                return None
        offset, length, stream = _RECORD.unpack_from(self._block, i * size)
        return offset, length, stream

    def read(self, seq: int) -> tuple[SpoolRecord, bytes] | None:
        """Chunk ``seq``: its record and its bytes."""
        self._borrow()
        rec = self.record(seq)
        if rec is None:
            self._give_back()
            return None
        data = _pread(self._data_r, self.data_path, rec[1], rec[0])
        if seq >= self.records - 1:
            self._give_back()  # a reader that reached the end needs them no more
        return (rec, data) if len(data) == rec[1] else None

    def read_at(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the data file at ``offset``; OSError if they are not all there."""
        self._borrow()
        data = _pread(self._data_r, self.data_path, length, offset)
        if len(data) != length or offset + length >= self.size:
            self._give_back()
        if len(data) != length:
            raise OSError(f"spool {self.data_path.name} holds {len(data)} of {length} bytes at {offset}")
        return data

    def _borrow(self) -> None:
        """Hold the read descriptors of a finished spool while a reader goes through it.

        A finished job's spool holds no descriptor (there may be thousands of
        them), so each read used to open and close both files; a subscriber
        that fell behind a fast job read its whole tail that way, four system
        calls more per chunk.  Now a reader borrows them until it reads the
        last chunk, or stops reading for ``_BORROW_IDLE``; at most
        ``_BORROWERS_MAX`` spools hold them at once (the least recently read
        gives them back first).
        """
        if self._index_r >= 0:
            if self in _borrowers:  # most recently read last
                del _borrowers[self]
                _borrowers[self] = time.monotonic()
            return
        if not self._finished or self._retired or not self.created:
            return
        try:
            index = os.open(self.index_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            data = os.open(self.data_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(index)
            return
        self._index_r, self._data_r = index, data
        _borrowers[self] = time.monotonic()
        while len(_borrowers) > _BORROWERS_MAX:
            next(iter(_borrowers))._give_back()
        _arm_sweep()

    def _give_back(self) -> None:
        """Close borrowed read descriptors (nothing if none are borrowed)."""
        self._block = b""
        if self not in _borrowers:
            return
        del _borrowers[self]
        for fd in (self._data_r, self._index_r):
            if fd >= 0:
                os.close(fd)
        self._data_r = self._index_r = -1

    def count(self, length: int) -> None:
        """Count a chunk another process wrote to the spool (:class:`~ccxd.output.follower.FollowedSpool`)."""
        raise NotImplementedError("this spool is written by the daemon itself")

    def seq_at(self, offset: int) -> int:
        """The first chunk whose bytes end after ``offset`` (``records`` if none)."""
        borrowed = self in _borrowers
        lo, hi = 0, self.records
        while lo < hi:
            mid = (lo + hi) // 2
            rec = self.record(mid)
            if rec is None or rec[0] + rec[1] > offset:
                hi = mid
            else:
                lo = mid + 1
        if not borrowed:
            self._give_back()
        return lo

    def close_writer(self) -> None:
        """Stop writing (after flushing) and hold no file descriptor; reads keep working.

        A finished job stays in memory for a long time (``finished_jobs_kept``),
        so its spool must not pin two descriptors each: later reads open the
        files for the one read.
        """
        if self._data_w is not None and not self.cut:
            self.flush()
        self._writing = False
        self._finished = True
        self._block = b""
        _borrowers.pop(self, None)
        for fd in (self._data_w, self._index_w, self._data_r, self._index_r):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._data_w = self._index_w = None
        self._data_r = self._index_r = -1

    def close(self) -> None:
        """Release every file descriptor; later reads open the files for the one read."""
        self._retired = True
        self.close_writer()

    def remove(self) -> None:
        """Close and delete the files."""
        self.close()
        for p in (self.data_path, self.index_path):
            p.unlink(missing_ok=True)


def _pread(fd: int, path: Path, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset`` through ``fd``, or through a brief open of ``path`` when ``fd`` is -1."""
    if fd >= 0:
        return os.pread(fd, size, offset)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""  # removed: the chunk is in neither memory nor spool
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_spool(directory: Path, job_id: str) -> Iterator[tuple[int, int, bytes]]:
    """Every chunk a spool left on disk holds, as (offset, stream, data), in order.

    Used after a crash to recover output that never reached the store; a torn
    last record is ignored.
    """
    index_path = directory / f"{job_id}.idx"
    data_path = directory / f"{job_id}.out"
    try:
        index = open(index_path, "rb")  # noqa: SIM115 - closed below with data
        data = open(data_path, "rb")  # noqa: SIM115
    except OSError:
        return
    with index, data:
        while True:
            raw = index.read(_RECORD.size)
            if len(raw) < _RECORD.size:
                return
            offset, length, stream = _RECORD.unpack(raw)
            if stream > 1:
                return  # the cut marker a job's shim writes (follower.py)
            data.seek(offset)
            chunk = data.read(length)
            if len(chunk) < length:
                return
            yield offset, stream, chunk


_SPOOL_SUFFIXES = (".out", ".idx", ".claude")  # .claude: a text-rendered Claude job's stream-json


def spooled_jobs(directory: Path) -> set[str]:
    """The ids of the jobs that have spool files in ``directory``."""
    found = set()
    with os.scandir(directory) as entries:
        for entry in entries:
            stem, dot, ext = entry.name.rpartition(".")
            if dot and f".{ext}" in _SPOOL_SUFFIXES:
                found.add(stem)
    return found


def remove_spool(directory: Path, job_id: str) -> None:
    """Delete a job's spool files (missing is fine)."""
    for suffix in _SPOOL_SUFFIXES:
        (directory / f"{job_id}{suffix}").unlink(missing_ok=True)
