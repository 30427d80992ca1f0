"""Chunking, framing, the spool, the output log and the job state machine, without I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccxd.output.chunker import Utf8Chunker
from ccxd.output.log import OutputLog
from ccxd.output.spool import Spool
from ccxd.protocol import JobState
from ccxd.supervision.state import InvalidTransition, check_transition
from ccxd.transports.framing import LineFramer, TooLarge


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=3000),
    st.lists(st.integers(min_value=0), max_size=30),
    st.integers(min_value=4, max_value=300),
)
def test_chunks_of_text_are_whole_characters_and_reassemble(text: str, cuts: list[int], size: int) -> None:
    data = text.encode()
    ch = Utf8Chunker(size)
    chunks = [c for piece in split_at(data, cuts) for c in ch.feed(piece)] + ch.flush()
    assert b"".join(chunks) == data
    for c in chunks:
        assert 0 < len(c) <= size
        c.decode("utf-8")  # never a split character


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=30))
def test_chunks_of_any_bytes_reassemble_exactly(data: bytes, cuts: list[int]) -> None:
    ch = Utf8Chunker(64)
    chunks = [c for piece in split_at(data, cuts) for c in ch.feed(piece)] + ch.flush()
    assert b"".join(chunks) == data and all(0 < len(c) <= 64 for c in chunks)


def test_framer_handles_split_lines_crlf_blank_lines_and_too_large() -> None:
    f = LineFramer(10)
    assert f.feed(b'{"a"') == []
    assert f.feed(b":1}\r\n\n  \n[1]\n") == [b'{"a":1}', b"[1]"]
    out = f.feed(b"x" * 25)
    assert len(out) == 1 and isinstance(out[0], TooLarge) and f.buffered == 0
    assert f.feed(b"y" * 100) == [] and f.buffered == 0  # still discarding, never buffering
    assert f.feed(b"zz\nok\n") == [b"ok"]
    long_then_fine = f.feed(b"0123456789AB\n1\n")
    assert isinstance(long_then_fine[0], TooLarge) and long_then_fine[1] == b"1"


def test_spool_round_trip_lookup_and_cut(tmp_path: Path) -> None:
    s = Spool(tmp_path, "j", limit=100)
    offset = 0
    for i in range(5):
        data = bytes([65 + i]) * 10
        assert s.append(offset, i % 2, data)
        offset += 10
    assert s.read(3) == ((30, 10, 1), b"D" * 10)
    assert s.seq_at(0) == 0 and s.seq_at(35) == 3 and s.seq_at(49) == 4 and s.seq_at(50) == 5
    assert not s.append(50, 0, b"x" * 60)  # over the limit: cut
    assert s.cut and s.read(4) == ((40, 10, 0), b"E" * 10)
    s.remove()
    assert not (tmp_path / "j.out").exists()


def test_spool_write_failure_cuts_instead_of_failing(tmp_path: Path) -> None:
    s = Spool(tmp_path, "j", limit=1 << 30)
    assert s.append(0, 0, b"a" * 10)
    import os

    os.close(s._data_w)  # type: ignore[arg-type]  # the disk goes away
    s._data_w = os.open("/dev/full", os.O_WRONLY)
    s._last_flush = 0.0
    assert not s.append(10, 0, b"b" * 10)
    assert s.cut and s.error is not None


def test_output_log_evicts_to_the_spool_and_reports_gaps(tmp_path: Path) -> None:
    log = OutputLog(memory_limit=25, spool=Spool(tmp_path, "j", limit=30))
    for i in range(6):
        log.append(i % 2, bytes([48 + i]) * 10)
    assert log.size == 60 and log.first_memory_seq == 4
    assert log.get(1).data == b"1" * 10  # from the spool
    assert log.get(3) is None  # spool cut at 30 bytes and evicted from memory: a gap
    assert log.seq_at(15) == 1 and log.seq_at(45) == 4 and log.seq_at(60) == 6
    assert log.available_offset(log.first_memory_seq) == 40  # where a lagging reader resumes


@pytest.mark.parametrize(
    ("a", "b", "ok"),
    [
        (JobState.QUEUED, JobState.STARTING, True),
        (JobState.STARTING, JobState.RUNNING, True),
        (JobState.RUNNING, JobState.PAUSED, True),
        (JobState.PAUSED, JobState.RUNNING, True),
        (JobState.RUNNING, JobState.FINISHED, True),
        (JobState.FINISHED, JobState.RUNNING, False),
        (JobState.QUEUED, JobState.RUNNING, False),
        (JobState.PAUSED, JobState.QUEUED, False),
    ],
)
def test_state_machine(a: JobState, b: JobState, ok: bool) -> None:
    if ok:
        assert check_transition(a, b) is b
    else:
        with pytest.raises(InvalidTransition):
            check_transition(a, b)
