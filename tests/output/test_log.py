"""A job's output log (ccxd.output.log): memory ring in front of the spool."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccxd.output.follower import FollowedSpool
from ccxd.output.log import STREAMS, Chunk, OutputLog
from ccxd.output.spool import _RECORD, Spool
from tests.descriptors import out_of_descriptors


def ten(i: int) -> bytes:
    """Ten bytes that say which chunk they are."""
    return bytes([48 + i % 10]) * 10


def test_append_numbers_chunks_and_counts_bytes_per_stream() -> None:
    log = OutputLog(memory_limit=1 << 20)
    a = log.append(0, b"hello\n")
    b = log.append(1, b"oops\n")
    c = log.append(0, b"bye\n")
    assert [(x.seq, x.stream, x.offset, x.end) for x in (a, b, c)] == [
        (0, 0, 0, 6),
        (1, 1, 6, 11),
        (2, 0, 11, 15),
    ]
    assert log.next_seq == 3 and log.size == 15
    assert log.stream_bytes == [10, 5]
    assert STREAMS == ("stdout", "stderr")
    assert log.get(1) is b


def test_memory_keeps_only_the_newest_output_within_its_limit() -> None:
    log = OutputLog(memory_limit=25)
    for i in range(6):
        log.append(0, ten(i))
    assert log.first_memory_seq == 4  # 20 bytes kept; a third chunk would make 30
    assert log.get(3) is None  # no spool: evicted output is gone
    got = log.get(4)
    assert got is not None and got.data == ten(4)
    assert log.get(6) is None


def test_the_newest_chunk_stays_even_when_larger_than_the_limit() -> None:
    log = OutputLog(memory_limit=5)
    log.append(0, b"x" * 100)
    log.append(0, b"y" * 100)
    assert log.first_memory_seq == 1
    got = log.get(1)
    assert got is not None and got.data == b"y" * 100


def test_evicted_chunks_are_read_back_from_the_spool(tmp_path: Path) -> None:
    log = OutputLog(memory_limit=25, spool=Spool(tmp_path, "j", limit=1 << 20))
    for i in range(6):
        log.append(i % 2, ten(i))
    assert log.first_memory_seq == 4
    for seq in range(6):
        chunk = log.get(seq)
        assert chunk is not None
        assert (chunk.seq, chunk.stream, chunk.offset, chunk.data) == (seq, seq % 2, seq * 10, ten(seq))
    assert log.get(-1) is None
    assert log.cut is False


def test_output_in_neither_memory_nor_spool_is_a_gap(tmp_path: Path) -> None:
    log = OutputLog(memory_limit=25, spool=Spool(tmp_path, "j", limit=30))
    for i in range(8):
        log.append(0, ten(i))
    # Spool: chunks 0-2 (cut at 30 bytes).  Memory: chunks 6-7.  Lost: chunks 3-5, bytes [30, 60).
    assert log.cut is True
    assert log.size == 80  # the log still counts every byte
    assert [log.get(s) is not None for s in range(8)] == [True, True, True, False, False, False, True, True]
    # A reader that finds a chunk missing continues with the oldest chunk in memory, at offset 60.
    assert log.available_offset(log.first_memory_seq) == 60
    assert [log.available_offset(s) for s in (2, 3, 4, 5, 7, 8)] == [20, 60, 60, 60, 70, 80]


@pytest.mark.parametrize(
    ("offset", "seq"),
    [
        (0, 0),  # spool
        (15, 1),  # spool, inside a chunk
        (29, 2),
        (30, 3),  # lost: the first lost chunk (a reader finds it missing and reports the gap)
        (45, 3),
        (59, 3),
        (60, 6),  # memory
        (69, 6),
        (70, 7),
        (79, 7),
        (80, 8),  # the end: next_seq
        (10_000, 8),  # beyond the end
    ],
)
def test_seq_at_for_offsets_in_spool_gap_memory_and_beyond(tmp_path: Path, offset: int, seq: int) -> None:
    log = OutputLog(memory_limit=25, spool=Spool(tmp_path, "j", limit=30))
    for i in range(8):
        log.append(0, ten(i))
    assert log.seq_at(offset) == seq


def test_a_reader_starting_in_lost_output_finds_the_gap_and_where_it_ends(tmp_path: Path) -> None:
    log = OutputLog(memory_limit=25, spool=Spool(tmp_path, "j", limit=30))
    for i in range(8):
        log.append(0, ten(i))
    for offset in (30, 31, 59):
        seq = log.seq_at(offset)
        assert log.get(seq) is None
        assert log.available_offset(seq) == 60  # the gap is [offset, 60)


def test_seq_at_without_spool_and_on_an_empty_log() -> None:
    log = OutputLog(memory_limit=25)
    assert log.seq_at(0) == 0
    for i in range(6):
        log.append(0, ten(i))
    # Evicted and unrecoverable: the first lost chunk, which get() does not have.
    assert log.seq_at(0) == 0 and log.get(0) is None
    assert log.seq_at(39) == 0
    assert log.available_offset(0) == 40
    assert log.seq_at(41) == 4
    assert log.seq_at(55) == 5
    assert log.seq_at(60) == 6


def test_many_chunks_through_a_small_ring_stay_addressable(tmp_path: Path) -> None:
    log = OutputLog(memory_limit=100, spool=Spool(tmp_path, "j", limit=1 << 20))
    for i in range(5000):
        log.append(i % 2, ten(i))
    assert log.first_memory_seq == 4990
    for seq in (0, 1234, 4989, 4990, 4999):
        chunk = log.get(seq)
        assert chunk is not None and chunk.offset == seq * 10 and chunk.data == ten(seq)
        assert log.seq_at(seq * 10 + 3) == seq
    assert log.seq_at(50_000) == 5000


def test_listeners_hear_every_append_and_the_close(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "j", limit=100)
    log = OutputLog(memory_limit=100, spool=spool)
    heard: list[int] = []

    def listener() -> None:
        heard.append(log.next_seq)

    log.add_listener(listener)
    log.append(0, b"a")
    log.append(1, b"b")
    log.close()
    assert heard == [1, 2, 2]
    assert log.closed
    assert spool.append(2, 0, b"c") is False  # closing the log stops the spool's writer
    log.remove_listener(listener)
    log.remove_listener(listener)  # removing twice is harmless
    log.append(0, b"d")
    assert heard == [1, 2, 2]


# -- chunks taken in from a spool the shim wrote ---------------------------------------


def shim_spool(tmp_path: Path, chunks: list[tuple[int, bytes]]) -> FollowedSpool:
    """A spool as ccxd-shim leaves it (data file, then its index), and its follower."""
    spool = FollowedSpool(tmp_path, "j", 1 << 30)
    offset = 0
    with open(spool.data_path, "wb") as data, open(spool.index_path, "wb") as index:
        for stream, raw in chunks:
            data.write(raw)
            index.write(_RECORD.pack(offset, len(raw), stream))
            offset += len(raw)
    return spool


def take_in(log: OutputLog, spool: FollowedSpool) -> list[Chunk]:
    return [log.append_spooled(stream, length) for stream, length in spool.take_new()]


def test_spooled_chunks_are_read_from_the_spool_only_when_asked_for(tmp_path: Path) -> None:
    spool = shim_spool(tmp_path, [(0, b"hello\n"), (1, b"oops\n"), (0, b"bye\n")])
    log = OutputLog(memory_limit=1 << 20, spool=spool)
    a, b, c = take_in(log, spool)
    assert [(x.seq, x.stream, x.offset, x.end) for x in (a, b, c)] == [(0, 0, 0, 6), (1, 1, 6, 11), (2, 0, 11, 15)]
    assert log.size == 15 and log.stream_bytes == [10, 5] and spool.records == 3
    # Nothing was read yet: what the file holds when a chunk is first asked for is what it gets ...
    with open(spool.data_path, "r+b") as f:
        f.seek(6)
        f.write(b"OOPS\n")
    got = log.get(1)
    assert got is b and got.data == b"OOPS\n"
    # ... and it keeps those bytes (one read per chunk, however many readers).
    with open(spool.data_path, "r+b") as f:
        f.seek(6)
        f.write(b"later")
    assert log.get(1) is b and b.data == b"OOPS\n"
    assert log.get(2) is c and c.data == b"bye\n"


def test_unread_chunks_whose_spool_is_gone_become_a_gap_readers_get_past(tmp_path: Path) -> None:
    spool = shim_spool(tmp_path, [(0, ten(i)) for i in range(5)])
    log = OutputLog(memory_limit=1 << 20, spool=spool)
    chunks = take_in(log, spool)
    assert chunks[3].data == ten(3)  # read while the spool was there: stays readable
    spool.close_writer()
    spool.remove()  # the job was retired while someone still followed it
    assert log.get(1) is None
    # A reader (subscription.pump's loop) resumes at the oldest readable chunk.
    seq = log.first_memory_seq
    assert seq == 2 and log.get(0) is None
    assert log.get(2) is None and log.first_memory_seq == 3
    got = log.get(3)
    assert got is not None and got.data == ten(3) and log.available_offset(3) == 30
    assert log.get(4) is None and log.next_seq == 5 and log.first_memory_seq == 5


def test_a_spool_the_daemon_cannot_open_yet_is_taken_in_once_it_can(tmp_path: Path) -> None:
    """Issue 19: out of descriptors, the follower waits instead of failing the job."""
    spool = shim_spool(tmp_path, [(0, b"hello\n"), (1, b"oops\n")])
    log = OutputLog(memory_limit=1 << 20, spool=spool)
    with out_of_descriptors():
        assert take_in(log, spool) == []
    assert spool.open_error is not None and "Too many open files" in spool.open_error
    assert [c.data for c in take_in(log, spool)] == [b"hello\n", b"oops\n"]
    log.close()
    assert spool.error is None and spool.open_error is None


def test_a_spool_never_opened_says_so_in_its_error(tmp_path: Path) -> None:
    spool = shim_spool(tmp_path, [(0, b"hello\n")])
    log = OutputLog(memory_limit=1 << 20, spool=spool)
    with out_of_descriptors():
        assert take_in(log, spool) == []
        log.close()
    assert spool.error == "the daemon could not open the spool its shim wrote: Too many open files"
