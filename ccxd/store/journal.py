"""A bounded, append-only journal of store writes on disk.

While Redis is unreachable, writes go here instead, in order; once Redis is
back the journal is replayed from its start and then emptied.  Records are
msgpack-encoded, each behind a 4-byte length, so a torn last record (a crash
mid-write) is detected and dropped.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import msgspec

from ccxd.store.ops import Op

__all__ = ["Journal"]

log = logging.getLogger("ccxd.store")

_LEN = struct.Struct("<I")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Op)


class Journal:
    """Append-only file of pending store writes, at most ``limit`` bytes."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.dropped = 0
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self._fd).st_size
        self.count = sum(1 for _ in self._records()) if self.size else 0

    def append(self, op: Op) -> bool:
        """Add ``op``; False (and counted as dropped) when the journal is full."""
        body = _encoder.encode(op)
        if self.size + _LEN.size + len(body) > self.limit:
            self.dropped += 1
            return False
        try:
            os.write(self._fd, _LEN.pack(len(body)) + body)
        except OSError as exc:
            self.dropped += 1
            log.error("journal write failed (%s); a store write is lost", exc)
            return False
        self.size += _LEN.size + len(body)
        self.count += 1
        return True

    def _records(self) -> Iterator[Op]:
        with open(self.path, "rb") as f:
            while True:
                head = f.read(_LEN.size)
                if len(head) < _LEN.size:
                    return
                (n,) = _LEN.unpack(head)
                body = f.read(n)
                if len(body) < n:
                    log.warning("journal %s ends in a torn record; dropped", self.path)
                    return
                try:
                    yield _decoder.decode(body)
                except msgspec.DecodeError:
                    log.warning("journal %s holds an unreadable record; skipped", self.path)

    def batches(self, n: int) -> Iterator[list[Op]]:
        """The pending writes, oldest first, ``n`` at a time.

        A replay holds one batch in memory, not the journal: an outage of
        minutes journals hundreds of megabytes, and a peak that size would stay
        in the daemon's RSS long after.
        """
        if not self.size:
            return
        batch: list[Op] = []
        for op in self._records():
            batch.append(op)
            if len(batch) >= n:
                yield batch
                batch = []
        if batch:
            yield batch

    def clear(self) -> None:
        """Forget everything (after a successful replay)."""
        os.ftruncate(self._fd, 0)
        self.size = 0
        self.count = 0

    def close(self) -> None:
        """Close the file (its content stays for the next start)."""
        os.close(self._fd)
