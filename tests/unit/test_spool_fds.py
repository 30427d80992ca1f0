"""A finished job's spool holds no file descriptors, yet its output stays readable."""

from __future__ import annotations

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
