"""A job's output spool on disk (ccxd.output.spool)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from ccxd.output import spool as spool_mod
from ccxd.output.spool import Spool, read_spool


@pytest.fixture
def gathered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends wait in memory until flush() (no time-based writes)."""
    monkeypatch.setattr(spool_mod, "FLUSH_INTERVAL", 1e12)


def fill(spool: Spool, pieces: list[tuple[int, bytes]]) -> None:
    offset = spool.size
    for stream, data in pieces:
        assert spool.append(offset, stream, data)
        offset += len(data)


def test_append_then_read_every_chunk_back(tmp_path: Path) -> None:
    s = Spool(tmp_path, "job1", limit=1 << 20)
    fill(s, [(0, b"hello\n"), (1, b"oops\n"), (0, b"\xff\xfe")])
    assert s.records == 3 and s.size == 13
    assert s.read(0) == ((0, 6, 0), b"hello\n")
    assert s.read(1) == ((6, 5, 1), b"oops\n")
    assert s.read(2) == ((11, 2, 0), b"\xff\xfe")
    assert s.read(3) is None
    assert s.read(-1) is None
    s.close()


def test_files_are_private(tmp_path: Path) -> None:
    s = Spool(tmp_path, "job1", limit=100)
    assert s.append(0, 0, b"x")
    for p in (s.data_path, s.index_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    s.close()


def test_chunks_still_in_memory_are_readable_and_flush_writes_them(tmp_path: Path, gathered: None) -> None:
    s = Spool(tmp_path, "job1", limit=1 << 20)
    fill(s, [(0, b"abc"), (1, b"de")])
    assert s.pending
    assert s.data_path.stat().st_size == 0  # gathered, not yet written
    assert s.read(1) == ((3, 2, 1), b"de")  # reading flushes first
    assert not s.pending
    assert s.data_path.read_bytes() == b"abcde"
    assert s.index_path.stat().st_size == 2 * 13
    s.close()


@pytest.mark.parametrize(
    ("offset", "seq"),
    [(0, 0), (5, 0), (6, 1), (10, 1), (11, 2), (12, 2), (13, 3), (10_000, 3)],
)
def test_seq_at_finds_the_chunk_holding_an_offset(tmp_path: Path, offset: int, seq: int) -> None:
    s = Spool(tmp_path, "job1", limit=1 << 20)
    fill(s, [(0, b"hello\n"), (1, b"oops\n"), (0, b"ok")])  # [0,6) [6,11) [11,13)
    assert s.seq_at(offset) == seq
    s.close()


def test_a_chunk_past_the_limit_cuts_the_spool(tmp_path: Path, gathered: None) -> None:
    s = Spool(tmp_path, "job1", limit=10)
    fill(s, [(0, b"12345"), (0, b"67890")])  # exactly at the limit: still kept
    assert not s.cut
    assert s.append(10, 0, b"x") is False
    assert s.cut and s.error is None
    assert s.records == 2 and s.size == 10
    assert s.data_path.read_bytes() == b"1234567890"  # what was gathered reached the disk
    assert s.append(11, 0, b"") is False  # nothing is appended after a cut
    assert s.read(1) == ((5, 5, 0), b"67890")
    assert s.seq_at(10) == 2
    s.close()


def test_disk_full_cuts_the_spool_instead_of_failing(tmp_path: Path) -> None:
    (tmp_path / "job1.out").symlink_to("/dev/full")
    s = Spool(tmp_path, "job1", limit=1 << 20)
    assert s.append(0, 0, b"a" * 100) is False  # the first append is written at once
    assert s.cut
    assert s.error == os.strerror(errno.ENOSPC)
    assert s.records == 0 and s.size == 0
    assert s.read(0) is None
    assert s.seq_at(0) == 0
    assert s.append(100, 0, b"b") is False
    s.close()


def test_a_failed_write_keeps_what_is_already_on_disk(
    tmp_path: Path, gathered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Spool(tmp_path, "job1", limit=1 << 20)
    fill(s, [(0, b"aaaa"), (1, b"bb")])
    assert s.flush()

    def disk_full(fd: int, data: bytes | bytearray) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(spool_mod, "_write_all", disk_full)
    assert s.append(6, 0, b"cc")  # gathered in memory
    assert s.flush() is False
    assert s.cut and s.error == "No space left on device"
    assert s.records == 2 and s.size == 6
    assert s.read(1) == ((4, 2, 1), b"bb")
    assert s.read(2) is None
    assert s.seq_at(7) == 2
    s.close()


def test_readers_work_after_the_writer_is_closed(tmp_path: Path, gathered: None) -> None:
    s = Spool(tmp_path, "job1", limit=100)
    fill(s, [(0, b"one"), (1, b"two")])
    s.close_writer()  # flushes
    assert s.append(6, 0, b"x") is False
    assert s.read(1) == ((3, 3, 1), b"two")
    s.remove()
    assert not s.data_path.exists() and not s.index_path.exists()


def test_read_spool_recovers_chunks_and_ignores_a_torn_last_record(tmp_path: Path) -> None:
    s = Spool(tmp_path, "job1", limit=100)
    fill(s, [(0, b"one"), (1, b"two"), (0, b"three")])
    s.close()
    assert list(read_spool(tmp_path, "job1")) == [(0, 0, b"one"), (3, 1, b"two"), (6, 0, b"three")]
    with open(s.index_path, "r+b") as f:
        f.truncate(2 * 13 + 5)
    assert list(read_spool(tmp_path, "job1")) == [(0, 0, b"one"), (3, 1, b"two")]
    assert list(read_spool(tmp_path, "no-such-job")) == []


def test_a_spool_that_cannot_be_opened_leaves_no_descriptor_open(tmp_path: Path) -> None:
    (tmp_path / "job1.idx").mkdir()  # the index cannot be opened for writing
    before = sorted(os.listdir("/proc/self/fd"))
    s = Spool(tmp_path, "job1", limit=100)
    assert s.append(0, 0, b"hello\n") is False  # the files are created with the first chunk
    assert s.cut and s.error is not None and "cannot create the spool" in s.error
    assert s.read(0) is None
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_a_job_that_writes_nothing_creates_no_files(tmp_path: Path) -> None:
    before = sorted(os.listdir("/proc/self/fd"))
    s = Spool(tmp_path, "silent", limit=100)
    assert sorted(os.listdir("/proc/self/fd")) == before
    s.close_writer()
    assert s.read(0) is None and s.seq_at(0) == 0
    assert s.append(0, 0, b"late") is False  # the writer is closed
    assert list(tmp_path.iterdir()) == []
    s.remove()
