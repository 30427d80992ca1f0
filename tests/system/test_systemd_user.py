"""ccxd as a systemd user service, from the .deb, in a booted Debian 12 (systemd-nspawn).

Everything runs as the lingering user ``ccx`` through ``systemctl --user`` and
``ccxctl``, the way a user meets ccxd. The tests share one machine and run in
file order; each puts the units in the state it needs first.
"""

from __future__ import annotations

import json
import time

import pytest

from .conftest import USER
from .machine import Machine

# The first test also builds the .deb and boots the machine (seconds alone, minutes on a busy host).
pytestmark = pytest.mark.timeout(900)

STALL_DROPIN = "~/.config/systemd/user/ccxd.service.d/50-stall.conf"


def user(machine: Machine, command: str, check: bool = True):  # type: ignore[no-untyped-def]
    return machine.run(command, user=USER, check=check)


def show(machine: Machine, unit: str, *props: str) -> dict[str, str]:
    out = user(machine, f"systemctl --user show {unit} " + " ".join(f"-p {p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_for(what: str, predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (systemd's state has no event we can wait on from outside)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def journal(machine: Machine, grep: str) -> str:
    """Lines of the user's journal (manager and services) matching ``grep``."""
    uid = machine.run(f"id -u {USER}").stdout.strip()
    return machine.run(f"journalctl -q --no-pager _UID={uid} --grep {grep!r}", check=False).stdout


def test_start_reaches_active_running_through_ready(machine: Machine) -> None:
    user(machine, "systemctl --user start ccxd.service")  # Type=notify: returns on READY=1
    state = show(machine, "ccxd.service", "ActiveState", "SubState", "StatusText", "MainPID", "Type")
    assert (state["Type"], state["ActiveState"], state["SubState"]) == ("notify", "active", "running")
    assert state["StatusText"] == "0 running, 0 queued, 0 finished"  # STATUS= from ccxd itself
    status = json.loads(user(machine, "ccxctl status --json").stdout)
    assert status["pid"] == int(state["MainPID"])


def test_ccxctl_run_prints_hi(machine: Machine) -> None:
    res = user(machine, "ccxctl run 'echo hi'")
    assert res.stdout == "hi\n"


def test_the_first_connection_starts_the_daemon(machine: Machine) -> None:
    user(machine, "systemctl --user stop ccxd.service && systemctl --user start ccxd.socket")
    assert user(machine, "systemctl --user is-active ccxd.service", check=False).stdout.strip() == "inactive"
    assert user(machine, "test -S $XDG_RUNTIME_DIR/ccxd/ccxd.sock", check=False).returncode == 0
    res = user(machine, "ccxctl run 'echo started by the socket'")
    assert res.stdout == "started by the socket\n"
    assert show(machine, "ccxd.service", "ActiveState", "SubState") == {
        "ActiveState": "active",
        "SubState": "running",
    }
    assert "unix socket from systemd" in journal(machine, "socket activation")
    # A stop leaves the socket with systemd: the next connection starts the daemon again.
    user(machine, "systemctl --user stop ccxd.service")
    assert user(machine, "ccxctl run 'echo again'").stdout == "again\n"


def test_reload_applies_the_new_config(machine: Machine) -> None:
    user(machine, "systemctl --user start ccxd.service")
    user(machine, "mkdir -p ~/.config/ccxd && echo 'max_concurrent_jobs = 1' > ~/.config/ccxd/config.toml")
    before = journal(machine, "config reloaded").count("\n")
    user(machine, "systemctl --user reload ccxd.service")
    # ExecReload= returns once SIGHUP is sent; ccxd logs when the new config applies.
    wait_for("the reload", lambda: journal(machine, "config reloaded").count("\n") > before)
    assert "max_concurrent_jobs=1" in journal(machine, "config reloaded")
    first = user(machine, "ccxctl run --detach 'sleep 300'").stdout.strip()
    second = user(machine, "ccxctl run --detach 'sleep 300'").stdout.strip()
    jobs = {j["id"]: j["state"] for j in json.loads(user(machine, "ccxctl ps --json").stdout)}
    assert (jobs[first], jobs[second]) == ("running", "queued")  # one slot now
    user(machine, f"ccxctl cancel {first} && ccxctl cancel {second} && rm ~/.config/ccxd/config.toml")
    user(machine, "systemctl --user reload ccxd.service")


def test_a_stalled_loop_is_restarted_by_the_watchdog(machine: Machine) -> None:
    user(
        machine,
        f"mkdir -p $(dirname {STALL_DROPIN}) && printf '[Service]\\nWatchdogSec=2s\\n"
        f"Environment=CCXD_DEBUG_STALL_FILE=%%h/stall\\n' > {STALL_DROPIN} && "
        "systemctl --user daemon-reload && systemctl --user restart ccxd.service",
    )
    try:
        old = show(machine, "ccxd.service", "MainPID", "NRestarts")
        user(machine, "touch ~/stall")

        def restarted_and_running() -> dict[str, str] | None:
            s = show(machine, "ccxd.service", "MainPID", "NRestarts", "SubState")
            return s if s["NRestarts"] != old["NRestarts"] and s["SubState"] == "running" else None

        restarted = wait_for("a restart by the watchdog", restarted_and_running)
        assert int(restarted["NRestarts"]) == int(old["NRestarts"]) + 1
        assert restarted["MainPID"] != old["MainPID"]
        assert "ccxd.service: Watchdog timeout" in journal(machine, "Watchdog timeout")
        assert user(machine, "ccxctl run 'echo alive'").stdout == "alive\n"
    finally:
        user(machine, f"rm -f {STALL_DROPIN} ~/stall && systemctl --user daemon-reload")


COUNTER = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done"


def running_jobs(machine: Machine) -> dict[str, dict]:  # type: ignore[type-arg]
    return {j["id"]: j for j in json.loads(user(machine, "ccxctl ps --json").stdout)}


def start_counter(machine: Machine) -> tuple[str, dict, str]:  # type: ignore[type-arg]
    """A fresh daemon running COUNTER: the job id, its record, the daemon's pid."""
    user(machine, "systemctl --user restart ccxd.service")
    job = user(machine, f"ccxctl run --detach '{COUNTER}'").stdout.strip()
    wait_for("the job's output", lambda: "line 5" in user(machine, f"ccxctl logs {job}").stdout)
    return job, running_jobs(machine)[job], show(machine, "ccxd.service", "MainPID")["MainPID"]


def test_restart_and_a_crash_leave_jobs_running_for_the_next_daemon(machine: Machine) -> None:
    job, before, first = start_counter(machine)

    # systemctl restart: SIGTERM as for a stop, but on_restart (leave) applies.
    user(machine, "systemctl --user restart ccxd.service")
    second = show(machine, "ccxd.service", "MainPID")["MainPID"]
    assert second != first
    assert "systemd is restarting this unit" in journal(machine, "restarting this unit")
    adopted = running_jobs(machine)[job]
    assert (adopted["state"], adopted["pid"]) == ("running", before["pid"])

    # A crash: systemd restarts the daemon (Restart=on-failure); KillMode=process spares the job.
    user(machine, "systemctl --user kill --kill-whom=main -s KILL ccxd.service")

    def restarted() -> bool:
        now = show(machine, "ccxd.service", "MainPID", "ActiveState")
        return now["MainPID"] not in (second, "0") and now["ActiveState"] == "active"

    wait_for("a restart after the crash", restarted)
    adopted = running_jobs(machine)[job]
    assert (adopted["state"], adopted["pid"]) == ("running", before["pid"])

    # The job is whole and still under control: every line once, in order, then cancelled.
    user(machine, f"ccxctl cancel {job}")
    wait_for("the cancel", lambda: job not in running_jobs(machine))
    lines = user(machine, f"ccxctl logs {job}").stdout.splitlines()
    assert lines == [f"line {i}" for i in range(len(lines))] and len(lines) > 5
    assert machine.run(f"ps -eo pid= | grep -qw {before['pid']}", check=False).returncode == 1


def test_a_package_upgrade_restarts_the_daemon_and_keeps_its_jobs(machine: Machine) -> None:
    job, before, old_pid = start_counter(machine)
    # Reinstalling runs postinst as an upgrade from the same version.
    deb = machine.run("ls /var/tmp/ccxd_*.deb").stdout.split()[0]
    machine.run(f"apt-get install -y -q --reinstall {deb}", timeout=120)
    state = show(machine, "ccxd.service", "MainPID", "ActiveState")
    assert state["ActiveState"] == "active" and state["MainPID"] != old_pid
    adopted = running_jobs(machine)[job]
    assert (adopted["state"], adopted["pid"]) == ("running", before["pid"])
    user(machine, f"ccxctl cancel {job}")
    wait_for("the cancel", lambda: job not in running_jobs(machine))


def test_init_enables_and_starts_the_units_and_doctor_agrees(machine: Machine) -> None:
    user(machine, "systemctl --user disable --now ccxd.service ccxd.socket")
    user(machine, "rm -rf ~/.config/ccxd")
    first = user(machine, "ccxctl init").stdout
    assert "created" in first and "config.toml" in first
    assert "enabled   ccxd.service" in first and "enabled   ccxd.socket" in first
    assert "started   ccxd.service" in first
    state = show(machine, "ccxd.service", "ActiveState", "UnitFileState")
    assert state == {"ActiveState": "active", "UnitFileState": "enabled"}
    assert user(machine, "ccxctl run 'echo set up by init'").stdout == "set up by init\n"
    # Run again: nothing that exists is changed, nothing restarted.
    pid = show(machine, "ccxd.service", "MainPID")["MainPID"]
    again = user(machine, "ccxctl init").stdout
    assert "kept      ccxd.service (already enabled)" in again and "started" not in again
    assert show(machine, "ccxd.service", "MainPID")["MainPID"] == pid
    doctor = user(machine, "ccxctl doctor", check=False).stdout
    unit_line = next(line for line in doctor.splitlines() if "systemd unit" in line)
    assert unit_line.startswith("ok") and "service enabled, socket enabled, active" in unit_line, doctor


def test_stop_ends_running_jobs_cleanly_and_leaves_no_process(machine: Machine) -> None:
    user(machine, "systemctl --user restart ccxd.service")
    single = user(machine, "ccxctl run --detach 'sleep 301'").stdout.strip()
    tree = user(machine, "ccxctl run --detach 'sleep 302 & (sleep 303 &); sleep 304'").stdout.strip()
    assert wait_for("the job's processes", lambda: "sleep 304" in machine.run("ps -eo args").stdout)
    user(machine, "systemctl --user stop ccxd.service ccxd.socket")
    state = show(machine, "ccxd.service", "ActiveState", "Result")
    assert state == {"ActiveState": "inactive", "Result": "success"}  # a clean exit, not a kill
    left = machine.run(f"ps -u {USER} -o pid=,args=").stdout.splitlines()
    assert [line for line in left if "systemd --user" not in line and "(sd-pam)" not in line] == []
    # The jobs were ended, not lost: the next daemon's history says so.
    user(machine, "systemctl --user start ccxd.service")
    listed = json.loads(user(machine, "ccxctl history list --json").stdout)
    reasons = {j["id"]: (j["state"], j.get("reason")) for j in listed}
    assert reasons[single][0] == reasons[tree][0] == "finished"
    assert reasons[single][1] == reasons[tree][1] == "cancelled"
    user(machine, "systemctl --user stop ccxd.service")
