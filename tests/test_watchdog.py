"""The watchdog pings stop when the event loop stalls (so systemd restarts the daemon)."""

from __future__ import annotations

import signal
import time


def test_a_stalled_event_loop_stops_the_watchdog_pings(daemon_factory, tmp_root):
    stall = tmp_root / "stall"
    d = daemon_factory(
        extra_env={"WATCHDOG_USEC": "200000", "CCXD_DEBUG_STALL_FILE": str(stall), "CCXD_STORE": "memory"},
    )
    assert "WATCHDOG=1" in d.next_notify(5)
    stall.touch()
    deadline = time.monotonic() + 10
    while "blocking the event loop" not in d.log():  # logged right before the loop blocks
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    d._notify.setblocking(False)
    try:  # pings sent before the stall began
        while True:
            d._notify.recv(4096)
    except BlockingIOError:
        pass
    # Ten intervals without a ping: systemd (WatchdogSec=) would now kill and restart it.
    d._notify.settimeout(1.0)
    try:
        late = d._notify.recv(4096).decode()
    except TimeoutError:
        late = ""
    assert "WATCHDOG=1" not in late
    assert not stall.exists()  # one-shot: a restarted daemon does not stall again
    d.stop(signal.SIGKILL)
