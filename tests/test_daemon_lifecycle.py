"""Starting, refusing to start twice, reloading, watchdog pings and stopping."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ccxd import paths
from ccxd.output.spool import spooled_jobs
from ccxd.protocol import JobFinished
from tests.helpers import RawConnection, job_pids


def test_version():
    res = subprocess.run(
        [sys.executable, "-m", "ccxd", "--version"], capture_output=True, text=True, check=True
    )
    assert res.stdout.strip().startswith("ccxd 0.")


def test_ready_only_when_it_accepts_connections_and_status_lines(daemon):
    # DaemonProcess.start returned on READY=1: a connection must work right away.
    ready = next(m for m in daemon.notify_messages if "READY=1" in m)
    assert "STATUS=0 running, 0 queued, 0 finished" in ready and f"MAINPID={daemon.proc.pid}" in ready
    c = RawConnection(daemon.socket)
    assert c.call("daemon.ping")["result"]["pong"] is True
    reply = c.call("daemon.status", req_id=2)["result"]
    assert reply["pid"] == daemon.proc.pid and reply["version"].startswith("0.")
    assert reply["jobs"] == {"queued": 0, "starting": 0, "running": 0, "paused": 0, "finished": 0}
    assert {"kind": "unix", "address": str(daemon.socket)} in reply["listeners"]
    ws = [entry["address"] for entry in reply["listeners"] if entry["kind"] == "websocket"]
    assert len(ws) == 1 and ws[0].startswith("ws://127.0.0.1:") and ws[0].endswith("/ws")
    assert reply["uptime"] >= 0 and reply["loop_lag_ms"] >= 0
    c.close()


def test_a_second_daemon_on_the_same_socket_refuses_to_start(daemon):
    res = subprocess.run(
        [sys.executable, "-m", "ccxd"], env=daemon.env, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 69
    assert "already serving" in res.stderr and str(daemon.socket) in res.stderr
    assert RawConnection(daemon.socket).call("daemon.ping")["result"]["pong"]  # the first one is unharmed


def test_a_stale_socket_from_a_killed_daemon_is_replaced(daemon_factory, tmp_root):
    first = daemon_factory(root=tmp_root / "d")
    first.stop(signal.SIGKILL)
    assert first.socket.exists()  # left behind
    second = daemon_factory(root=tmp_root / "d")
    assert RawConnection(second.socket).call("daemon.ping")["result"]["pong"]


def test_sigterm_cancels_jobs_leaves_nothing_and_says_stopping(daemon):
    c = RawConnection(daemon.socket)
    job = c.call("job.start", {"command": "echo started; sleep 300"})["result"]
    helpers = psutil.Process(daemon.proc.pid).children()  # the embedded redis-server among them
    assert any(p.name() == "redis-server" for p in helpers)
    assert daemon.stop(signal.SIGTERM) == 0
    assert not [p for p in helpers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert any("STOPPING=1" in m for m in daemon.notify_messages)
    assert job_pids(job["id"]) == []
    assert not daemon.socket.exists()


def test_drain_lets_short_jobs_finish(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_ON_STOP": "drain", "CCXD_DRAIN_TIMEOUT": "30"})
    c = RawConnection(d.socket)
    job = c.call("job.start", {"command": "sleep 0.5; echo finished"})["result"]
    assert d.stop(signal.SIGTERM) == 0
    log = d.log()
    assert f"job {job['id']} finished: exited (exit 0) in " in log  # never "signal None"


def test_a_jobs_end_is_logged_as_its_exit_code_or_its_signal(daemon):
    c = RawConnection(daemon.socket)
    ids = []
    for req_id, command in enumerate(("exit 3", "kill -TERM $$"), 1):
        ids.append(c.call("job.start", {"command": command, "subscribe": True}, req_id=req_id)["result"]["id"])
        while c.recv().get("method") != "job.finished":
            pass
    log = daemon.log()
    assert f"job {ids[0]} finished: exited (exit 3) in " in log
    assert f"job {ids[1]} finished: killed (signal 15) in " in log
    assert "signal None" not in log and "exit None" not in log


def test_a_clean_stop_leaves_no_job_files_and_loses_no_record(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d")
    c = RawConnection(d.socket)
    done = c.call("job.start", {"command": "echo done", "subscribe": True}, req_id=1)["result"]
    while (msg := c.recv()).get("method") != "job.finished":
        pass
    assert msg["params"]["job"]["id"] == done["id"]
    running = c.call("job.start", {"command": "echo up; sleep 300"}, req_id=2)["result"]
    jobs = paths.jobs_dir(d.socket)
    assert d.stop(signal.SIGINT) == 0
    assert list(jobs.iterdir()) == []  # the records are in the store: the files are done
    d2 = daemon_factory(root=tmp_root / "d")
    c2 = RawConnection(d2.socket)
    listed = c2.call("history.list", {})["result"]["jobs"]
    outcomes = {j["id"]: (j["state"], j["reason"]) for j in listed}
    assert outcomes == {done["id"]: ("finished", "exited"), running["id"]: ("finished", "cancelled")}


def test_sighup_reloads_the_config(daemon_factory, tmp_root):
    config = tmp_root / "ccxd.toml"
    config.write_text("max_concurrent_jobs = 4\n")
    d = daemon_factory(args=["--config", str(config)])
    config.write_text('max_concurrent_jobs = 1\nlog_level = "info"\n')
    d.proc.send_signal(signal.SIGHUP)
    reloading = d.next_notify()
    assert "RELOADING=1" in reloading and "MONOTONIC_USEC=" in reloading
    assert "READY=1" in d.next_notify()
    assert "max_concurrent_jobs=1" in d.log()
    # The new limit applies: a second job now waits.
    c = RawConnection(d.socket)
    c.call("job.start", {"command": "sleep 30"}, req_id=1)
    queued = c.call("job.start", {"command": "true"}, req_id=2)["result"]
    assert queued["state"] == "queued"


def test_ccxctl_reload_says_what_changed_and_keeps_a_config_it_cannot_read(daemon_factory, tmp_root):
    config = tmp_root / "ccxd.toml"
    config.write_text("max_concurrent_jobs = 4\n")
    d = daemon_factory(args=["--config", str(config)])
    env = dict(d.env, CCXD_SOCKET=str(d.socket))

    def reload() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "ccxctl", "reload"]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    config.write_text("max_concurrent_jobs = 1\nws_host = '::1'\n")
    res = reload()
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "ccxd reloaded its config: max_concurrent_jobs=1",
        "these settings take a restart to change: ws_host",
    ]
    c = RawConnection(d.socket)
    c.call("job.start", {"command": "sleep 30"}, req_id=1)
    assert c.call("job.start", {"command": "true"}, req_id=2)["result"]["state"] == "queued"
    config.write_text("max_concurrent_jobs = 1\nport = 1\n")
    bad = reload()
    assert bad.returncode == 1 and bad.stdout == ""
    [line] = bad.stderr.splitlines()
    assert line.startswith("ccxctl: reload failed, ccxd keeps its config:")
    assert line.endswith("unknown setting 'port' (did you mean `ws_port`?)")
    assert c.call("daemon.status", req_id=3)["result"]["pid"] == d.proc.pid  # still serving


def test_watchdog_pings_come_from_the_event_loop(daemon_factory):
    d = daemon_factory(extra_env={"WATCHDOG_USEC": "200000"}, start=False)
    d.start()
    assert "WATCHDOG=1" in d.next_notify(5)
    assert "WATCHDOG=1" in d.next_notify(5)


def test_journald_style_logs_when_journal_stream_is_set(daemon_factory):
    d = daemon_factory(extra_env={"JOURNAL_STREAM": "8:1234"})
    RawConnection(d.socket).call("job.start", {"command": "true"})
    d.stop()
    lines = [line for line in d.log().splitlines() if line]
    assert lines and all(line[0] == "<" and line[2] == ">" for line in lines)
    assert any(line.startswith("<6>ccxd.daemon: ccxd") for line in lines)


def test_the_daemon_writes_nothing_to_stdout(daemon):
    c = RawConnection(daemon.socket)
    c.call("job.start", {"command": "echo to the job's own pipe"})
    c.call("job.frobnicate", req_id=2)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.next_notify()
    assert daemon.stop() == 0
    assert daemon.stdout_path.read_bytes() == b""  # logs go to stderr only
    assert "ccxd.daemon: stopped" in daemon.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_a_restart_clears_the_spools_of_finished_jobs_and_keeps_their_output(daemon_factory, tmp_root, sig):
    root = tmp_root / "spools"
    d = daemon_factory(root=root)
    c = await d.client()
    ids = []
    for i in range(3):
        async for ev in c.run(f"seq 1 {1000 + i}"):
            if isinstance(ev, JobFinished):
                ids.append(ev.job.id)
    await c.close()
    spool = root / "state" / "ccxd" / "spool"
    assert spooled_jobs(spool) >= set(ids)  # finished jobs kept in memory keep their spools
    # A job's file goes once its finished record is in the store.  Until then (a few
    # milliseconds after job.finished) a SIGKILL leaves the job to crash recovery, which
    # keeps its spool on purpose; the point here is the spools of recorded jobs.
    jobs = paths.jobs_dir(d.socket)
    deadline = time.monotonic() + 10
    while any((jobs / f"{job_id}.job").exists() for job_id in ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # no event outside the daemon says "recorded"
    d.stop(sig)

    d2 = daemon_factory(root=root)
    # Before, every restart left them behind for good: up to spool_max_bytes each.
    assert not spooled_jobs(spool) & set(ids)
    c2 = await d2.client()
    for i, job_id in enumerate(ids):
        page = await c2.read(job_id, max_bytes=1 << 20)
        assert b"".join(ch.raw() for ch in page.chunks) == b"".join(b"%d\n" % n for n in range(1, 1001 + i))
    await c2.close()
