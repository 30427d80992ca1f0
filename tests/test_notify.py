"""sd_notify never blocks the daemon, even when nobody reads the notification socket."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from ccxd.notify import Notifier


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A NOTIFY_SOCKET that is not read until the test says so (a stalled manager)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


async def _receive_until(sock: socket.socket, last: str) -> list[str]:
    loop = asyncio.get_running_loop()
    got: list[str] = []
    while not got or got[-1] != last:
        got.append((await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)).decode())
    return got


@pytest.mark.timeout(30)  # a blocking send would hang here, not fail
async def test_a_stalled_manager_neither_blocks_the_loop_nor_loses_ready_or_stopping(manager):
    notifier = Notifier()
    notifier.ready("0 running")
    for i in range(200):
        notifier.status(f"{i} running")
        notifier.send("WATCHDOG=1")
    notifier.stopping()
    assert notifier.pending > 0, "the receiver's queue should have filled up"

    got = await _receive_until(manager, "STOPPING=1\nSTATUS=stopping")
    assert got[0].startswith("READY=1\nSTATUS=0 running")
    statuses = [int(m.removeprefix("STATUS=").split()[0]) for m in got if m.startswith("STATUS=") and "\n" not in m]
    assert statuses == sorted(statuses), "messages arrive in the order they were sent"
    assert statuses[-1] == 199, "the newest status is never the one dropped"
    assert notifier.pending == 0


async def test_what_is_queued_at_exit_is_flushed_with_a_bounded_wait(manager):
    notifier = Notifier()
    for i in range(100):
        notifier.status(f"{i} running")
    notifier.stopping()
    assert notifier.pending > 0
    # The receiver catches up meanwhile, as systemd does on a busy machine.
    loop = asyncio.get_running_loop()
    drained = loop.run_in_executor(None, _drain_blocking, manager)
    notifier.flush(timeout=5.0)
    got = await drained
    assert got[-1] == "STOPPING=1\nSTATUS=stopping"
    assert notifier.pending == 0


def _drain_blocking(sock: socket.socket) -> list[str]:
    sock.setblocking(True)
    sock.settimeout(10)
    got: list[str] = []
    while not got or got[-1] != "STOPPING=1\nSTATUS=stopping":
        got.append(sock.recv(4096).decode())
    return got


async def test_a_manager_that_went_away_costs_nothing(manager, tmp_path: Path):
    notifier = Notifier()
    manager.close()
    (tmp_path / "notify.sock").unlink()
    notifier.status("1 running")  # ECONNREFUSED: logged at debug, dropped
    notifier.stopping()
    assert notifier.pending == 0
