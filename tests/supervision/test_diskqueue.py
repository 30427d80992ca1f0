"""The supervisor's per-job file work: one ordered thread, or inline where files are cheap."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
from pathlib import Path

import pytest

from ccxd import paths
from ccxd.supervision.diskqueue import DiskQueue


@pytest.mark.parametrize("inline", [False, True])
async def test_work_runs_in_the_order_it_was_asked_for(inline: bool) -> None:
    q = DiskQueue(inline=inline)
    done: list[int] = []
    threads: set[str] = set()

    def step(n: int) -> int:
        threads.add(threading.current_thread().name)
        done.append(n)
        return n * 10

    futures = []
    for n in range(50):
        if n % 3:
            q.later(lambda n=n: step(n))
        else:
            futures.append(q.submit(lambda n=n: step(n)))
    assert [await f for f in futures] == [n * 10 for n in range(0, 50, 3)]
    assert await q.flush(5)
    assert done == list(range(50))
    main = threading.current_thread().name
    assert threads == ({main} if inline else {"ccxd-disk"})


@pytest.mark.parametrize("inline", [False, True])
async def test_a_failure_reaches_the_waiter_or_the_log_never_the_queue(
    inline: bool, caplog: pytest.LogCaptureFixture
) -> None:
    q = DiskQueue(inline=inline)

    def boom() -> None:
        raise OSError("disk on fire")

    caplog.set_level(logging.WARNING, "ccxd.supervision")
    q.later(boom)
    with pytest.raises(OSError, match="disk on fire"):
        await q.submit(boom)
    assert await q.submit(lambda: "still works") == "still works"
    assert await q.flush(5)
    assert "disk on fire" in caplog.text


async def test_inline_work_is_done_before_submit_returns() -> None:
    q = DiskQueue(inline=True)
    seen: list[str] = []
    fut = q.submit(lambda: seen.append("x"))
    assert seen == ["x"] and fut.done()
    await asyncio.sleep(0)


def _fs_type(path: str) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("where", ["/dev/shm", "/proc", "/"])
def test_in_memory_tells_tmpfs_from_other_file_systems(where: str) -> None:
    if not Path(where).exists():
        pytest.skip(f"{where} is not on this machine")
    assert paths.in_memory(Path(where) / "some" / "file") == (_fs_type(where) in ("tmpfs", "ramfs"))
