"""A spool written by someone else (the job's shim), followed by the daemon.

The shim appends output to ``<job>.out`` and one record per chunk to
``<job>.idx`` (data first, so a record never points at missing bytes).  It
creates both files when the job first writes (data file first), so a job
without output has none; the daemon opens them once the index exists.  The
daemon takes in new records with :meth:`FollowedSpool.take_new` and appends
their chunks to the job's :class:`~ccxd.output.log.OutputLog` without their
bytes (:meth:`~ccxd.output.log.OutputLog.append_spooled`, which calls
:meth:`FollowedSpool.count`): whoever needs a chunk's bytes reads them from
the data file then, once.
A record with stream 255 marks where the shim cut the spool (``spool_max_bytes``).
When the daemon cannot open the files (out of descriptors) it tries again with
the next output; if it never could, the job's record says so
(``output_lost``) and keeps the job's own outcome.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ccxd.output.shimformat import CUT_STREAM, SPOOL_RECORD
from ccxd.output.spool import Spool, _borrowers

__all__ = ["CUT_STREAM", "FollowedSpool"]

log = logging.getLogger("ccxd.output")

_READ_RECORDS = 4096  # records per index read (~53 KiB)
READ_BYTES = 1024 * 1024
"""Output bytes :meth:`FollowedSpool.take_new` returns at most (one record more if it is bigger)."""


class FollowedSpool(Spool):
    """The reading side of a spool whose writer is another process."""

    def __init__(self, directory: Path, job_id: str, limit: int, *, existing: bool = False) -> None:
        """``existing``: an adopted job's spool (open what is there); else the shim makes the files later."""
        super().__init__(directory, job_id, limit)  # state only; the files are opened on demand
        self._read_pos = 0  # next index byte to read
        self.cut_seen = False
        self._done = False  # closed for good: reads open the files briefly
        self.open_error: str | None = None
        """Why the files could not be opened the last time (tried again with the next output)."""
        if existing:
            self._open_readers()

    def _open_readers(self) -> bool:
        """Open the files once the shim has made them; False while there is no index yet."""
        if self._index_r >= 0:
            return True
        if self._done:
            return False
        try:
            index = os.open(self.index_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            return self._cannot_open(exc)
        try:
            data = os.open(self.data_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(index)
            return self._cannot_open(exc)
        self._data_r, self._index_r = data, index
        self.created = True
        self.open_error = None
        return True

    def _cannot_open(self, exc: OSError) -> bool:
        if self.open_error is None:
            log.warning("cannot open the spool %s (tried again later): %s", self.index_path.name, exc)
        self.open_error = exc.strerror or str(exc)
        return False

    # The shim writes; the daemon only counts what it has taken in.

    def append(self, offset: int, stream: int, data: bytes) -> bool:
        """Count a chunk the shim wrote (it is on disk already).

        Chunks after the cut come from the shim's overflow pipe: not in the spool.
        """
        if self.cut:
            return False
        self.count(len(data))
        return True

    def count(self, length: int) -> None:
        """Count a chunk of ``length`` bytes :meth:`take_new` returned (it is on disk already)."""
        self.records += 1
        self.size += length
        self.flushed_records = self.records

    @property
    def pending(self) -> bool:
        """Never: nothing waits in this process."""
        return False

    def flush(self) -> bool:
        """Nothing to write."""
        return not self.cut

    def close_writer(self) -> None:
        """The job's output is complete: hold no descriptor (reads open the files briefly)."""
        if self._index_r < 0 and self.open_error is not None and self.error is None:
            self.error = f"the daemon could not open the spool its shim wrote: {self.open_error}"
            log.error("spool %s: %s", self.index_path.name, self.error)
        self._done = True
        self._finished = True
        self._block = b""
        _borrowers.pop(self, None)
        for fd in (self._data_r, self._index_r):
            if fd >= 0:
                os.close(fd)
        self._data_r = self._index_r = -1

    def record(self, seq: int) -> tuple[int, int, int] | None:
        """The index record of chunk ``seq``, if taken in already."""
        if seq < 0 or seq >= self.records:
            return None
        return self._indexed(seq, self.records)

    def take_new(self) -> list[tuple[int, int]]:
        """Chunks the shim wrote since the last call (about READ_BYTES), as (stream, length).

        Their bytes stay on disk: :meth:`read_at` reads them.
        """
        return [(stream, length) for _, length, stream in self._new_records()]

    def _new_records(self) -> list[tuple[int, int, int]]:
        if not self._open_readers():
            return []
        raw = os.pread(self._index_r, SPOOL_RECORD.size * _READ_RECORDS, self._read_pos)
        whole = len(raw) - len(raw) % SPOOL_RECORD.size
        if not whole:
            return []
        recs: list[tuple[int, int, int]] = []
        size = 0
        for rec in SPOOL_RECORD.iter_unpack(raw[:whole]):
            if recs and size + rec[1] > READ_BYTES:
                break
            recs.append(rec)
            size += rec[1]
        self._read_pos += len(recs) * SPOOL_RECORD.size
        if recs[-1][2] == CUT_STREAM:
            recs.pop()
            self.cut_seen = True  # the caller sets ``cut`` once it took in these chunks
        return recs

    def skip_existing(self, most: int | None = None) -> tuple[int, list[int]]:
        """Take in the records already on disk (at most ``most``) without their data (adoption).

        Returns the number of records and the bytes per stream.
        """
        stream_bytes = [0, 0]
        pos = 0
        if not self._open_readers():
            return 0, stream_bytes  # the job has written nothing yet
        while most is None or self.records < most:
            want = _READ_RECORDS if most is None else min(_READ_RECORDS, most - self.records)
            raw = os.pread(self._index_r, SPOOL_RECORD.size * want, pos)
            whole = len(raw) - len(raw) % SPOOL_RECORD.size
            if not whole:
                break
            for offset, length, stream in SPOOL_RECORD.iter_unpack(raw[:whole]):
                if stream == CUT_STREAM:
                    self.cut = True
                    continue
                stream_bytes[stream] += length
                self.records += 1
                self.size = offset + length
            pos += whole
        self.flushed_records = self.records
        self._read_pos = pos
        return self.records, stream_bytes
