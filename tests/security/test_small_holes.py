"""Issue 19's smaller holes, each attacked for real.

* a hook file, the hooks directory or the config that another uid (the
  ``ccxd-attacker`` of conftest.py) owns or may write is refused, with one
  clear error, and the user's other hooks still load;
* secrets passed to ``ccxctl run`` stay out of ``ps`` (``--env-file``,
  ``--env NAME``), and secret values never reach the record, history, the
  daemon log, the job files or the store's AOF, while the job sees them;
* a hook that blocks never stalls the daemon for long, and is disabled after
  repeated offences;
* a shell with a NUL byte is refused as invalid params, without a traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ccxd.supervision.shim import find_shim
from tests.ccxctl.test_ccxctl import ccxctl
from tests.conftest import DaemonProcess
from tests.helpers import RawConnection

MARKER_HOOK = """
from pathlib import Path
Path({marker!r}).write_text("the attacker's code ran as the victim")

async def touch(ctx):
    Path({marker!r}).write_text("the attacker's hook ran as the victim")

HOOKS = {{"pre_execution": [touch], "post_execution": [touch]}}
"""

GOOD_HOOK = """
from ccxd.hooks import HookResult

async def mine(ctx):
    return HookResult.annotate(mine="ran")

HOOKS = {"post_execution": [mine]}
"""


def write_hooks(directory: Path, **files: str) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    for name, body in files.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return directory


def run_json(daemon: DaemonProcess, *args: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    res = ccxctl(daemon, "run", "--json", *args, **kw)
    assert res.returncode == 0, res.stderr
    return last_record(res.stdout)


def last_record(out: bytes) -> dict:  # type: ignore[type-arg]
    """The job record of ``ccxctl run --json``'s last line (``job.finished``)."""
    event = json.loads(out.splitlines()[-1])
    assert event["event"] == "job.finished", event
    return event["data"]["job"]  # type: ignore[no-any-return]


# -- hook files and the config of another user ----------------------------------------


def test_hook_files_another_user_owns_or_may_write_are_refused_and_the_rest_load(
    daemon_factory, tmp_root: Path, attacker: int
):
    marker = tmp_root / "attacker-was-here"
    hooks = write_hooks(
        tmp_root / "hooks",
        a_mine=GOOD_HOOK,
        owned=MARKER_HOOK.format(marker=str(marker)),
        loose=MARKER_HOOK.format(marker=str(marker)),
    )
    os.chown(hooks / "owned.py", attacker, -1)  # the attacker's file, dropped in the victim's directory
    os.chmod(hooks / "loose.py", 0o666)  # the victim's file, which anyone may rewrite
    d = daemon_factory(extra_env={"CCXD_HOOKS_DIR": str(hooks)})

    listed = ccxctl(d, "hooks", "list")
    assert listed.returncode == 0, listed.stderr
    errors = [line for line in listed.stderr.decode().splitlines() if line.startswith("ccxctl:")]
    assert errors == [
        f"ccxctl: not loaded: {hooks}/loose.py: refusing a hook file writable by group and others "
        "(mode 0666); chmod go-w it",
        f"ccxctl: not loaded: {hooks}/owned.py: refusing a hook file owned by ccxd-attacker "
        f"(uid {attacker}), not by you; chown it to yourself",
    ]
    assert (
        b"a_mine.mine" in listed.stdout and b"owned." not in listed.stdout and b"loose." not in listed.stdout
    )
    log = d.log()
    assert log.count("refusing a hook file") == 2 and "Traceback" not in log

    job = run_json(d, "echo fine")
    assert job["annotations"] == {"mine": "ran"}  # the victim's own hook still runs
    assert not marker.exists()  # the attacker's code never ran


@pytest.mark.parametrize("how", ["group-writable", "attacker's"])
def test_a_hooks_directory_others_can_write_loads_none_of_its_files(
    daemon_factory, tmp_root: Path, attacker: int, how: str
):
    marker = tmp_root / "attacker-was-here"
    hooks = write_hooks(tmp_root / "hooks", mine=GOOD_HOOK, dropped=MARKER_HOOK.format(marker=str(marker)))
    if how == "group-writable":
        os.chmod(hooks, 0o770)
    else:
        os.chown(hooks, attacker, -1)
    d = daemon_factory(extra_env={"CCXD_HOOKS_DIR": str(hooks)})
    listed = ccxctl(d, "hooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert [h["source"] for h in found["hooks"] if str(hooks) in h["source"]] == []
    assert len(found["errors"]) == 1 and found["errors"][0].startswith(
        f"{hooks}: refusing the hooks directory, "
    ), found["errors"]
    assert ("writable by its group" if how == "group-writable" else "owned by ccxd-attacker") in found[
        "errors"
    ][0]
    assert run_json(d, "true")["state"] == "finished"
    assert not marker.exists()


@pytest.mark.parametrize("how", ["world-writable", "attacker's"])
def test_a_config_another_user_owns_or_may_write_stops_the_daemon_in_one_line(
    tmp_root: Path, attacker: int, how: str
):
    config = tmp_root / "ccxd.toml"
    config.write_text('log_level = "debug"\n')
    if how == "world-writable":
        os.chmod(config, 0o646)
    else:
        os.chown(config, attacker, -1)
    d = DaemonProcess(tmp_root / "d", args=["--config", str(config)])
    for extra in ([], ["--print-config"]):
        res = subprocess.run(
            [*d.command, *d.args, *extra],
            env=d.env,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        err = res.stderr.decode()
        assert res.returncode == 78, err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"ccxd: config error: {config}: refusing a config file "), err
        assert ("mode 0646" if how == "world-writable" else f"ccxd-attacker (uid {attacker})") in err
        assert res.stdout == b""
    assert not d.socket.exists()
    os.chown(config, os.getuid(), -1)
    os.chmod(config, 0o644)  # the user's own file again: accepted
    d.start()
    d.stop()


def test_a_reload_keeps_the_old_config_when_the_file_became_writable_by_others(daemon_factory, tmp_root):
    config = tmp_root / "ccxd.toml"
    config.write_text("max_concurrent_jobs = 3\n")
    d = daemon_factory(args=["--config", str(config)])
    config.write_text("max_concurrent_jobs = 1\n")
    os.chmod(config, 0o666)
    res = ccxctl(d, "reload")
    assert res.returncode != 0 and b"refusing a config file writable by group and others" in res.stderr
    assert "reload failed, keeping the old config" in d.log()
    assert d.proc is not None and d.proc.poll() is None


# -- secrets on the command line ----------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
def test_env_file_and_env_name_keep_secrets_out_of_ps(daemon, tmp_root: Path, fast: bool):
    env_file = tmp_root / "secrets.env"
    env_file.write_text("# deploy keys\nFILE_SECRET=from-the-file-0451\n\nPLAIN=x y z\n")
    env_file.chmod(0o600)
    go = tmp_root / "go"
    argv = [sys.executable, "-m", "ccxctl"] + ([] if fast else ["--socket", str(daemon.socket)])
    argv += ["run", "--env-file", str(env_file), "--env", "NAME_SECRET", "--env", "SHOWN=1", "--"]
    argv += [
        f'echo waiting; while [ ! -e {go} ]; do sleep 0.02; done; echo "$FILE_SECRET|$NAME_SECRET|$PLAIN|$SHOWN"'
    ]
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket), NAME_SECRET="from-my-env-8086")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"waiting\n"  # the job runs and ccxctl waits for it
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()  # what ps shows every user
        go.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert b"--env-file" in cmdline and b"NAME_SECRET" in cmdline
    assert b"from-the-file-0451" not in cmdline and b"from-my-env-8086" not in cmdline
    assert (out, proc.returncode) == (b"from-the-file-0451|from-my-env-8086|x y z|1\n", 0), err


@pytest.mark.parametrize("fast", [True, False])
def test_env_name_unset_or_env_file_missing_is_said_in_one_line(daemon, tmp_root: Path, fast: bool):
    missing = ccxctl(daemon, "run", "--env-file", str(tmp_root / "nope.env"), "true", fast=fast)
    unset = ccxctl(daemon, "run", "--env", "SURELY_UNSET_VARIABLE", "true", fast=fast)
    assert missing.returncode == 2 and b"nope.env: No such file or directory" in missing.stderr
    assert (
        unset.returncode == 2 and b"SURELY_UNSET_VARIABLE is not set in ccxctl's environment" in unset.stderr
    )
    assert b"Traceback" not in missing.stderr + unset.stderr


# -- secret values in what is kept --------------------------------------------------------

SECRETS = (b"sk-verysecret", b"hunter2", b"s3cr3t-pw", b"daemon-side-77")


def grep_tree(root: Path, needles: tuple[bytes, ...]) -> list[str]:
    """Files under ``root`` holding any of ``needles``, with the needle."""
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {n.decode()}" for n in needles if n in data]
    return found


def test_secret_values_never_reach_records_history_logs_job_files_or_the_aof(daemon_factory, tmp_root: Path):
    daemon = daemon_factory(extra_env={"DEPLOY_TOKEN": "daemon-side-77"})  # a secret of the daemon's own
    go = tmp_root / "go"
    command = (
        'test "$API_KEY" = sk-verysecret && echo the job sees its key; '
        f"while [ ! -e {go} ]; do sleep 0.02; done; "
        ": curl https://u:hunter2@example.invalid/ --password s3cr3t-pw; : daemon-side-77"
    )
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket), API_KEY="sk-verysecret")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccxctl", "run", "--json", "--env", "API_KEY", "--tag", "leak", "--", command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the job runs
            if json.loads(line)["event"] == "job.output":
                break
        if find_shim() is not None:  # its job file becomes its adoption record, with its request
            deadline = time.monotonic() + 30
            while not grep_tree(daemon.runtime, (b'"start":{"params":',)):
                assert time.monotonic() < deadline, "no adoption record was written"
                time.sleep(0.02)
        running = grep_tree(daemon.runtime, SECRETS) + grep_tree(daemon.state, SECRETS)
        go.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert b"the job sees its key" in out  # the job ran with the real value (a JSON output line)
    job = last_record(out)
    assert running == []
    # What the user sees: redacted, and still readable.
    assert job["env"] == {"API_KEY": "***"}
    assert "https://u:***@example.invalid/ --password ***" in job["command"]
    assert 'test "$API_KEY" = *** &&' in job["command"]
    # Everything kept: the record, history, the log, the job files, the store (its AOF).
    conn = RawConnection(daemon.socket)
    try:
        got = json.dumps(conn.call("job.get", {"job_id": job["id"]})["result"]).encode()
    finally:
        conn.close()
    shown = ccxctl(daemon, "history", "show", job["id"], "--json")
    history = ccxctl(daemon, "history", "list", "--grep", "example", "--json")
    listed = ccxctl(daemon, "ps", "--all", "--json")
    for res in (shown, history, listed):
        assert res.returncode == 0 and job["id"].encode() in res.stdout, res.stderr
    for text in (got, shown.stdout, history.stdout, listed.stdout):
        assert b"u:***@example.invalid" in text and not [s for s in SECRETS if s in text], text
    assert not [s for s in SECRETS if s.decode() in daemon.log()]
    deadline = time.monotonic() + 30
    while not grep_tree(daemon.state, (b"u:***@example.invalid",)):  # the store wrote the record
        assert time.monotonic() < deadline, "the record never reached the store's files"
        time.sleep(0.05)
    assert grep_tree(daemon.runtime, SECRETS) == [] and grep_tree(daemon.state, SECRETS) == []


def test_a_failed_start_keeps_its_secret_out_of_the_error(daemon):
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket), DB_PASSWORD="s3cr3t-pw")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccxctl",
            "run",
            "--json",
            "--argv",
            "--env",
            "DB_PASSWORD",
            "--",
            "/no/such/dir/s3cr3t-pw",
        ],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 127, res.stderr
    job = last_record(res.stdout)
    assert job["error"] and "/no/such/dir/***" in job["error"], job
    assert b"s3cr3t-pw" not in res.stdout
    assert "s3cr3t-pw" not in daemon.log()


def test_print_config_shows_no_password_of_a_hook_program(tmp_root: Path):
    hook = {
        "name": "notify",
        "point": "post_execution",
        "command": "curl -s https://hooks:w3bh00k-pass@example.invalid/n --token t0ps3cret-hook",
    }
    d = DaemonProcess(tmp_root / "d", {"CCXD_COMMAND_HOOKS": json.dumps([hook])}, ["--print-config"])
    res = subprocess.run(d.command + d.args, env=d.env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    [line] = [ln for ln in res.stdout.decode().splitlines() if ln.startswith("command_hooks = ")]
    assert "https://hooks:***@example.invalid/n --token ***" in line
    assert "w3bh00k-pass" not in line and "t0ps3cret-hook" not in line


# -- hooks that block -----------------------------------------------------------------------

BLOCKING_ASYNC_HOOK = """
import time
from ccxd.hooks import Hook

async def stall(ctx):
    time.sleep(1.5)  # blocks the event loop: the bug in the hook this test plays

HOOKS = {"post_execution": [Hook(stall, timeout=0.5)]}
"""

SLEEPING_PLAIN_HOOK = """
import time
from pathlib import Path
from ccxd.hooks import Hook

def slow(ctx):
    Path({started!r}).touch()
    time.sleep(5)

HOOKS = {{"post_execution": [Hook(slow, timeout=10)]}}
"""


def hook_notes(daemon: DaemonProcess) -> list[str]:
    """What ``ccxctl hooks list`` says below its table."""
    listed = ccxctl(daemon, "hooks", "list")
    assert listed.returncode == 0, listed.stderr
    return [line for line in listed.stdout.decode().splitlines() if line.startswith("post_execution ")]


def test_an_async_hook_that_blocks_the_loop_is_reported_then_disabled(daemon_factory, tmp_root: Path):
    hooks = write_hooks(tmp_root / "hooks", stall=BLOCKING_ASYNC_HOOK)
    d = daemon_factory(extra_env={"CCXD_HOOKS_DIR": str(hooks)})
    for n in (1, 2, 3):
        job = run_json(d, f"echo job {n}")
        assert job["exit_code"] == 0  # the job itself is not harmed
        [outcome] = job["hooks"]
        assert outcome["name"] == "stall.stall" and outcome["result"] == "timeout", outcome
        assert re.match(
            r"blocked the event loop for (1\.[5-9]|[2-9]\.\d)s \(its timeout is 0\.5s\)", outcome["message"]
        )
        if n < 3:
            assert outcome["message"].endswith(f"; {n} of 3 times before it is disabled")
            assert hook_notes(d) == [
                f"post_execution stall.stall: blocked the event loop past its timeout {n} times"
            ]
    assert outcome["message"].endswith("; disabled after 3 times until the hooks are reloaded")
    [note] = hook_notes(d)
    assert re.fullmatch(
        r"post_execution stall.stall: DISABLED: blocked the event loop past its timeout 3 times "
        r"\(the last for \d\.\ds\); fix it and reload",
        note,
    ), note
    job = run_json(d, "echo job 4")
    assert "hooks" not in job and job["exit_code"] == 0  # runs without it
    assert d.log().count("stall.stall (post_execution) disabled") == 1
    ccxctl(d, "reload")  # the user fixed it (or not): loaded afresh, counted from zero
    assert hook_notes(d) == []


def test_a_plain_function_hook_that_sleeps_never_delays_the_daemon(daemon_factory, tmp_root: Path):
    started = tmp_root / "hook-started"
    hooks = write_hooks(tmp_root / "hooks", slow=SLEEPING_PLAIN_HOOK.format(started=str(started)))
    d = daemon_factory(extra_env={"CCXD_HOOKS_DIR": str(hooks)})
    assert ccxctl(d, "run", "--detach", "true").returncode == 0
    deadline = time.monotonic() + 30
    while not started.exists():  # the hook is asleep in its thread from now on (5 s)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    conn = RawConnection(d.socket)
    try:
        slowest = 0.0
        for i in range(20):
            sent = time.monotonic()
            assert "result" in conn.call("daemon.ping", req_id=i)
            slowest = max(slowest, time.monotonic() - sent)
            time.sleep(0.05)
    finally:
        conn.close()
    assert slowest < 0.2, f"a ping took {slowest:.3f}s while a hook slept"


# -- shell --------------------------------------------------------------------------------


def test_a_shell_with_a_nul_byte_is_invalid_params_without_a_traceback(daemon):
    conn = RawConnection(daemon.socket)
    try:
        reply = conn.call("job.start", {"command": "echo hi", "shell": "/bin/sh\u0000x"})
        assert reply["error"]["code"] == -32602, reply
        assert reply["error"]["message"] == "NUL byte not allowed - at `$.params.shell`"
        ok = conn.call("job.start", {"command": "echo hi"}, req_id=2)
        assert "result" in ok, ok  # the daemon goes on
    finally:
        conn.close()
    assert "Traceback" not in daemon.log()
