"""A finished job holds no spool descriptors and, once nobody follows it, no output in memory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ccxd.output.spool import Spool


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_closed_writer_releases_every_fd_and_reads_still_work(tmp_path: Path) -> None:
    before = open_fds()
    spools = [Spool(tmp_path, f"job{i}", limit=1 << 20) for i in range(20)]
    for s in spools:
        assert s.append(0, 0, b"hello\n") and s.append(6, 1, b"oops\n")
    assert open_fds() == before + 4 * 20
    for s in spools:
        s.close_writer()  # the job finished
    assert open_fds() == before
    for s in spools:
        assert s.read(1) == ((6, 5, 1), b"oops\n")
        assert s.seq_at(7) == 1
    assert open_fds() == before


def test_removed_spool_reads_nothing(tmp_path: Path) -> None:
    s = Spool(tmp_path, "gone", limit=1 << 20)
    s.append(0, 0, b"data\n")
    s.remove()
    assert s.read(0) is None
    assert not s.data_path.exists()


def test_a_finished_log_released_by_its_owner_reads_from_the_spool(tmp_path: Path) -> None:
    from ccxd.output.log import OutputLog

    log = OutputLog(memory_limit=1 << 20, spool=Spool(tmp_path, "j", limit=1 << 20))
    for i in range(10):
        log.append(i % 2, f"line {i}\n".encode())
    assert log.release_memory() is False  # still open: memory is where live readers are
    log.close()
    assert log.first_memory_seq == 0
    assert log.release_memory() is True
    assert log.first_memory_seq == log.next_seq == 10
    chunk = log.get(3)
    assert chunk is not None and chunk.data == b"line 3\n" and chunk.stream == 1
    assert log.seq_at(chunk.offset + 1) == 3
    assert log.available_offset(3) == chunk.offset


def test_a_cut_spool_keeps_the_memory_ring(tmp_path: Path) -> None:
    from ccxd.output.log import OutputLog

    log = OutputLog(memory_limit=1 << 20, spool=Spool(tmp_path, "j", limit=10))
    log.append(0, b"0123456789abc")  # past the spool's limit: only memory has it
    log.close()
    assert log.release_memory() is False
    chunk = log.get(0)
    assert chunk is not None and chunk.data == b"0123456789abc"


def _finished_spools(tmp_path: Path, n: int) -> list[Spool]:
    spools = [Spool(tmp_path, f"job{i}", limit=1 << 20) for i in range(n)]
    for s in spools:
        for i in range(600):  # more records than one read of the index takes in
            assert s.append(i * 6, i % 2, f"{i:05d}\n".encode())
        s.close_writer()
    return spools


def test_a_reader_going_through_finished_spools_holds_few_descriptors_and_none_at_the_end(
    tmp_path: Path,
) -> None:
    spools = _finished_spools(tmp_path, 6)
    # Readers that stopped half way: at most four spools keep their two descriptors.
    before = open_fds()
    for s in spools:
        assert s.read(1) == ((6, 6, 1), b"00001\n")
    held = open_fds()
    assert held <= before + 2 * 4
    # Read to the end, in order and backwards, every record is the one written.
    for s in spools:
        for i in [*range(600), *reversed(range(600))]:
            assert s.read(i) == ((i * 6, 6, i % 2), f"{i:05d}\n".encode())
        assert s.read(599) is not None  # the last chunk: the reader gives them back
    assert open_fds() == held - 2 * 4
    spools[0].read(3)
    spools[0].close()  # retired while read: nothing stays open
    assert open_fds() == held - 2 * 4
    assert spools[0].read(4) == ((24, 6, 0), b"00004\n")  # still readable until its files go
    assert open_fds() == held - 2 * 4


async def test_descriptors_a_reader_left_borrowed_are_given_back_once_it_stops(tmp_path: Path) -> None:
    spools = _finished_spools(tmp_path, 2)
    for s in spools:
        assert s.read(10) is not None  # a subscriber that then went away
    assert all(s._index_r >= 0 for s in spools)
    deadline = asyncio.get_running_loop().time() + 10
    while any(s._index_r >= 0 for s in spools):
        assert asyncio.get_running_loop().time() < deadline, "the borrowed descriptors were never given back"
        await asyncio.sleep(0.05)
    assert spools[0].read(11) == ((66, 6, 1), b"00011\n")  # a later reader borrows them again
