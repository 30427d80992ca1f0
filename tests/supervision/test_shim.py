"""ccxd-shim on its own: the spool it writes, the exit status it keeps, what it reports."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ccxd.output.follower import FollowedSpool
from ccxd.supervision.shim import find_shim
from tests.conftest import REQUIRE_TOOLS


@pytest.fixture
def shim() -> str:
    found = find_shim()
    if found is None:
        if REQUIRE_TOOLS:
            pytest.fail("ccxd-shim is not built (python -m ccxd.supervision.shim)")
        pytest.skip("ccxd-shim is not built")
    return found


def run_shim(shim: str, tmp: Path, argv: list[str], limit: int = 1 << 30, chunk: int = 1024):
    """Run the shim to its end; return (report line, exit file text or None, spool, overflow frames)."""
    spool = FollowedSpool(tmp, "j", limit)
    report_r, report_w = os.pipe()
    exit_file = tmp / "j.exit"
    data, index = str(spool.data_path), str(spool.index_path)
    proc = subprocess.Popen(
        [shim, data, index, str(report_w), str(exit_file), str(chunk), str(limit), "-", "-", "--", *argv],
        pass_fds=(report_w,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    os.close(report_w)
    with os.fdopen(report_r, "rb") as f:
        report = f.read().decode()
    assert proc.stdout is not None
    overflow = proc.stdout.read()
    assert proc.wait(30) in (0, 127)
    text = exit_file.read_text() if exit_file.exists() else None
    return report, text, spool, frames(overflow)


def frames(raw: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(raw):
        size = int.from_bytes(raw[pos + 1 : pos + 5], "little")
        out.append((raw[pos], raw[pos + 5 : pos + 5 + size]))
        pos += 5 + size
    assert pos == len(raw), "a torn frame"
    return out


def read_all(spool: FollowedSpool) -> list[tuple[int, bytes]]:
    out = []
    offset = 0
    while chunks := spool.take_new():
        for stream, length in chunks:
            out.append((stream, spool.read_at(offset, length)))
            offset += length
    return out


def test_output_in_order_with_streams_and_whole_characters(shim, tmp_path):
    # "é" is split across two writes (and two reads); 3000 "€" cross the 1024-byte chunk size.
    script = "printf 'a\\303'; sleep 0.2; printf '\\251\\n'; printf 'oops\\n' >&2; printf '%.0s€' $(seq 3000)"
    report, status, spool, overflow = run_shim(shim, tmp_path, ["bash", "-c", script + "; exit 3"])
    assert report.startswith("P ")
    assert status == "3 -\n"
    assert overflow == [(254, b"3 -")]  # the exit status, also on the overflow pipe
    chunks = read_all(spool)
    for _, data in chunks:
        data.decode()  # every chunk is whole UTF-8
        assert len(data) <= 1024
    assert b"".join(d for s, d in chunks if s == 0) == "aé\n".encode() + "€".encode() * 3000
    assert [d for s, d in chunks if s == 1] == [b"oops\n"]
    assert not spool.cut


def test_death_by_signal_is_recorded_as_the_signal(shim, tmp_path):
    _, status, _, overflow = run_shim(shim, tmp_path, ["bash", "-c", "kill -KILL $$"])
    assert status == "- 9\n" and overflow == [(254, b"- 9")]


def test_past_the_limit_output_goes_to_the_overflow_pipe(shim, tmp_path):
    report, status, spool, overflow = run_shim(
        shim, tmp_path, ["bash", "-c", "head -c 5000000 /dev/zero; echo end >&2"], limit=100_000
    )
    assert status == "0 -\n"
    chunks = read_all(spool)
    assert spool.cut_seen and sum(len(d) for _, d in chunks) <= 100_000
    assert os.path.getsize(tmp_path / "j.out") <= 100_000
    # What the spool could not take came as frames, in order, then the exit status.
    assert overflow[-1] == (254, b"0 -")
    spooled = b"".join(d for _, d in chunks)
    assert spooled + b"".join(d for s, d in overflow if s == 0) == b"\0" * 5_000_000
    assert [d for s, d in overflow if s == 1] == [b"end\n"]


def test_a_program_that_cannot_start_is_reported_with_its_errno(shim, tmp_path):
    report, status, spool, overflow = run_shim(shim, tmp_path, ["/nonexistent/program"])
    assert report.split() == ["E", "2", "exec"] and status is None and overflow == []
    assert read_all(spool) == []


def test_a_job_that_writes_nothing_leaves_no_spool_files(shim, tmp_path):
    report, status, spool, overflow = run_shim(shim, tmp_path, ["true"])
    assert report.startswith("P ") and status == "0 -\n"
    assert read_all(spool) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.exit"]


def test_a_spool_that_cannot_be_created_sends_the_output_to_the_overflow_pipe(shim, tmp_path):
    (tmp_path / "j.out").mkdir()  # the shim cannot create its data file
    report, status, spool, overflow = run_shim(shim, tmp_path, ["bash", "-c", "echo one; echo two >&2"])
    assert status == "0 -\n"
    assert read_all(spool) == []
    assert [d for s, d in overflow if s == 0] == [b"one\n"]
    assert [d for s, d in overflow if s == 1] == [b"two\n"]
    assert overflow[-1] == (254, b"0 -")


WRITER = """
import os, time
for i in range(512):
    os.write(1, b"%05d" % i + b"x" * 4090 + b"\\n")
    until = time.perf_counter_ns() + 20_000  # a steady 4 KiB every 20 us (200 MB/s)
    while time.perf_counter_ns() < until:
        pass
"""


def test_a_busy_writer_s_output_gathers_into_big_chunks(shim, tmp_path):
    # Taken in as it comes, each 4 KiB write would be a chunk of its own: hundreds of
    # chunks, and as many wake-ups for the shim, the daemon and every client.
    report, status, spool, overflow = run_shim(shim, tmp_path, ["python3", "-c", WRITER], chunk=65536)
    assert status == "0 -\n"
    chunks = read_all(spool)
    assert b"".join(d for _, d in chunks) == b"".join(b"%05d" % i + b"x" * 4090 + b"\n" for i in range(512))
    average = (2 << 20) // len(chunks)
    assert average >= 16 * 1024, f"{len(chunks)} chunks of {average} bytes on average: the output did not gather"


def test_a_big_spool_keeps_no_disk_space_past_its_data(shim, tmp_path):
    # The shim reserves the data file's blocks ahead of a big writer; once the job
    # ended, what it reserved and did not use is given back.
    size = 3 * 1024 * 1024 + 12345
    report, status, spool, overflow = run_shim(shim, tmp_path, ["head", "-c", str(size), "/dev/zero"], chunk=65536)
    assert status == "0 -\n"
    st = os.stat(spool.data_path)
    assert st.st_size == size
    assert st.st_blocks * 512 < size + 64 * 1024, f"{st.st_blocks * 512} bytes on disk for {size} bytes of output"
    assert sum(len(d) for _, d in read_all(spool)) == size
