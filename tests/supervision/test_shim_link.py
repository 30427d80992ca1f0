"""The link from a shim to its daemon: one pipe carries the report, frames, the exit status and the end."""

from __future__ import annotations

import asyncio
import os
import select
from pathlib import Path

import pytest

from ccxd.supervision.shimjob import DONE_STREAM, EXIT_STREAM, ShimLink, read_exit, read_exit_patiently
from tests.descriptors import out_of_descriptors


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream]) + len(data).to_bytes(4, "little") + data


async def test_report_frames_exit_status_and_end_arrive_in_order_whatever_the_reads() -> None:
    r, w = os.pipe()
    link = ShimLink(r)
    got: list[tuple[int, bytes]] = []
    wire = b"P 1234\n" + frame(0, b"past the cut") + frame(1, b"err") + frame(EXIT_STREAM, b"3 -")
    # Written a byte at a time, read as the loop turns: wherever reads split the stream.
    for i, byte in enumerate(wire):
        os.write(w, bytes([byte]))
        await asyncio.sleep(0)  # a turn of the loop, in which the link may read
        if i == 3:
            assert not link.report.done()
        if i == 20:
            link.attach(lambda stream, data: got.append((stream, data)))  # earlier frames too
    assert await link.report == b"P 1234"
    await link.leader_exited
    assert link.exit_status is not None
    assert (link.exit_status.code, link.exit_status.signal) == (3, None)
    assert got == [(0, b"past the cut"), (1, b"err")]
    assert not link.gone.done()
    os.close(w)
    await link.gone  # end of file: the shim is gone
    assert link.fd == -1


async def test_a_shim_that_ends_without_a_report_gives_an_empty_one() -> None:
    r, w = os.pipe()
    link = ShimLink(r)
    os.close(w)
    assert await link.report == b""
    await link.gone
    assert link.exit_status is None and not link.leader_exited.done()


async def test_a_killed_leader_is_reported_by_signal() -> None:
    r, w = os.pipe()
    link = ShimLink(r)
    os.write(w, b"P 1\n" + frame(EXIT_STREAM, b"- 9"))
    os.close(w)
    await link.gone
    assert link.exit_status is not None
    assert (link.exit_status.code, link.exit_status.signal) == (None, 9)


async def test_a_pooled_shims_done_frame_ends_the_job_and_closes_the_link_after_the_callbacks() -> None:
    # A pooled shim takes its next job only once this end is closed, and until then the
    # job's processes are the ones below it: the callbacks must run while it still waits.
    r, w = os.pipe()
    link = ShimLink(r)
    seen: list[bool] = []

    def readers_gone() -> bool:
        # What the shim polls for on its end of the link: POLLERR once no reader is left.
        p = select.poll()
        p.register(w, 0)
        return bool(p.poll(0))

    def still_open() -> None:
        seen.append(not readers_gone())

    link.on_gone(still_open)
    os.write(w, b"P 7\n" + frame(EXIT_STREAM, b"0 -") + frame(DONE_STREAM, b""))
    assert link.read_now()  # the done frame is in the pipe: read at once, no loop turn needed
    assert seen == [True] and link.fd == -1 and readers_gone()
    assert link.exit_status is not None and link.exit_status.code == 0
    assert await link.report == b"P 7"
    os.close(w)
    late: list[int] = []
    link.on_gone(lambda: late.append(1))  # registered after the end: called at once
    assert late == [1]


async def test_an_exit_file_the_daemon_cannot_open_is_no_exit_status_but_says_why(tmp_path: Path) -> None:
    """Issue 19: out of descriptors, the exit file is not "missing" (the job would be recorded killed)."""
    path = str(tmp_path / "j.exit")
    assert read_exit(path) is None  # not written yet
    with open(path, "w") as f:
        f.write("0 -\n")
    with out_of_descriptors():
        with pytest.raises(OSError):
            read_exit(path)
        status, problem = await read_exit_patiently(path, tries=2, pause=0.001)
    assert (status, problem) == (None, "cannot read the exit file: Too many open files")
    status, problem = await read_exit_patiently(path)
    assert status is not None and (status.code, status.signal, problem) == (0, None, "")
