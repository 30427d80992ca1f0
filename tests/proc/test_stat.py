"""A process whose program name holds spaces and parentheses is still found, measured and killed.

``/proc/PID/stat`` puts the name in parentheses among space-separated fields;
ccxd's one parser (ccxd/proc/stat.py) must not be fooled by either.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccxd.cgroups.procfs import proc_usage
from ccxd.proc.stat import read_stat
from ccxd.proc.tree import ProcessTree


@pytest.fixture
def oddly_named(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    sleep = shutil.which("sleep")
    assert sleep is not None
    program = tmp_path / "a) b (c"
    program.symlink_to(sleep)
    proc = subprocess.Popen([str(program), "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_its_stat_fields_are_read_right(oddly_named: subprocess.Popen[bytes]) -> None:
    info = read_stat(oddly_named.pid)
    assert info is not None
    assert info.pgrp == info.session == oddly_named.pid  # its own session, as a job's leader
    assert info.state in ("R", "S")
    assert proc_usage([oddly_named.pid]).memory > 0


async def test_its_tree_finds_and_kills_it(oddly_named: subprocess.Popen[bytes]) -> None:
    tree = ProcessTree("job-1", oddly_named.pid, oddly_named.pid)
    assert set(tree.members()) == {oddly_named.pid}
    await tree.kill()
    assert oddly_named.wait(timeout=5) == -9
    assert read_stat(oddly_named.pid) is None
