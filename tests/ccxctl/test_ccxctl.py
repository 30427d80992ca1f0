"""ccxctl as a user runs it: a real CLI process against a real daemon."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

ANSI = re.compile(rb"\x1b\[")


def ccxctl(
    daemon, *args: str, input: bytes | None = None, timeout: float = 60, fast: bool = True, **kw
) -> subprocess.CompletedProcess[bytes]:
    """Run ccxctl; ``fast=False`` puts the global option first, which forces the typer path."""
    argv = [sys.executable, "-m", "ccxctl"]
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket))
    env.pop("PYTHONUNBUFFERED", None)  # block-buffered output to a pipe, as users have it
    if not fast:
        argv += ["--socket", str(daemon.socket)]
    return subprocess.run([*argv, *args], env=env, capture_output=True, input=input, timeout=timeout, **kw)


@pytest.mark.parametrize("fast", [True, False])
def test_run_separates_streams_and_exits_with_the_job_code(daemon, fast):
    res = ccxctl(daemon, "run", "echo out; echo err >&2; exit 7", fast=fast)
    assert (res.stdout, res.stderr, res.returncode) == (b"out\n", b"err\n", 7)


@pytest.mark.parametrize("fast", [True, False])
def test_run_output_is_whole_in_a_pipe_though_ccxctl_exits_without_teardown(daemon, fast):
    # ccxctl ends with os._exit: every byte written must be flushed before it.
    res = ccxctl(daemon, "run", "seq 1 300000; echo done >&2", fast=fast)
    assert res.returncode == 0 and res.stderr == b"done\n"
    assert res.stdout == b"".join(b"%d\n" % i for i in range(1, 300001))
    status = ccxctl(daemon, "status", "--json", fast=fast)  # printed, not streamed
    assert status.returncode == 0 and json.loads(status.stdout)["pid"] == daemon.proc.pid


@pytest.mark.parametrize("fast", [True, False])
def test_run_reports_signals_timeouts_and_start_failures(daemon, fast):
    assert ccxctl(daemon, "run", "kill -USR1 $$", fast=fast).returncode == 128 + signal.SIGUSR1
    timed = ccxctl(daemon, "run", "--timeout", "0.5", "sleep 30", fast=fast)
    assert timed.returncode == 124 and b"timeout after 0.5s" in timed.stderr
    missing = ccxctl(daemon, "run", "--cwd", "/nonexistent/dir", "true", fast=fast)
    assert missing.returncode == 127 and b"does not exist" in missing.stderr


def test_run_words_options_env_cwd_and_argv(daemon, tmp_root):
    res = ccxctl(daemon, "run", "--env", "GREETING=hi there", "--cwd", str(tmp_root), "echo $GREETING; pwd")
    assert res.stdout.decode().splitlines() == ["hi there", str(tmp_root)]
    # Words after the command belong to the command, even when they look like options.
    assert ccxctl(daemon, "run", "ls", "-d", "/").stdout == b"/\n"
    assert ccxctl(daemon, "run", "--argv", "printf", "%s|", "a b", "c").stdout == b"a b|c|"
    assert ccxctl(daemon, "run", "--shell", "bash", "echo $BASH_VERSION").stdout.strip() != b""
    bad = ccxctl(daemon, "run", "--env", "NOEQUALS", "true")
    assert bad.returncode == 2 and b"KEY=VALUE" in bad.stderr


def test_detach_then_attach_gets_everything(daemon):
    res = ccxctl(daemon, "run", "--detach", "for i in 1 2 3; do echo line $i; done; exit 4")
    job_id = res.stdout.decode().strip()
    assert res.returncode == 0 and re.fullmatch(r"[0-9a-z]{13}", job_id)
    att = ccxctl(daemon, "attach", job_id)
    assert att.stdout == b"line 1\nline 2\nline 3\n" and att.returncode == 4
    logs = ccxctl(daemon, "logs", job_id)
    assert logs.stdout == b"line 1\nline 2\nline 3\n"


def test_attach_several_jobs_prefixes_each_line(daemon):
    a = ccxctl(daemon, "run", "-d", "echo alpha; echo beta").stdout.decode().strip()
    b = ccxctl(daemon, "run", "-d", "echo gamma").stdout.decode().strip()
    res = ccxctl(daemon, "attach", a, b)
    lines = sorted(res.stdout.decode().splitlines())
    assert lines == sorted([f"[{a}] alpha", f"[{a}] beta", f"[{b}] gamma"])


@pytest.mark.parametrize("fast", [True, False])
def test_json_events_are_ndjson_ending_with_finished(daemon, fast):
    res = ccxctl(daemon, "run", "--json", "echo hi", fast=fast)
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 0
    # One shape for every command that follows jobs: the protocol's notification and its params.
    assert all(set(e) == {"event", "data"} for e in events)
    methods = [e["event"] for e in events]
    assert methods[-1] == "job.finished" and "job.output" in methods
    [out] = [e["data"] for e in events if e["event"] == "job.output"]
    assert out["data"] == "hi\n" and out["stream"] == "stdout"
    job_id = events[-1]["data"]["job"]["id"]
    for args in (["attach", "--json", job_id], ["logs", "--json", job_id]):
        again = [json.loads(line) for line in ccxctl(daemon, *args, fast=fast).stdout.splitlines()]
        assert [e["data"] for e in again if e["event"] == "job.output"] == [out], args


def test_ctrl_c_cancels_the_job_and_exits_130(daemon):
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccxctl", "run", "echo started; sleep 300"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline() == b"started\n"  # the job runs: now interrupt
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"cancelling job" in err
    jobs = json.loads(ccxctl(daemon, "ps", "--all", "--json").stdout)
    [job] = [j for j in jobs if j["command"] == "echo started; sleep 300"]
    assert job["state"] == "finished" and job["reason"] == "cancelled"


@pytest.mark.parametrize("fast", [True, False])
def test_a_reader_that_leaves_ends_the_job_and_ccxctl_quietly(daemon, fast):
    # `ccxctl run ... | head -1`: the pipe closes under ccxctl, as under any Unix filter.
    command = "i=0; while true; do echo line $i; i=$((i+1)); done"
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket))
    argv = [sys.executable, "-m", "ccxctl"] + ([] if fast else ["--socket", str(daemon.socket)])
    proc = subprocess.Popen([*argv, "run", command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()  # the reader is gone
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == b""  # 128 + SIGPIPE, and no traceback
    jobs = json.loads(ccxctl(daemon, "ps", "--all", "--json").stdout)
    [job] = [j for j in jobs if j["command"] == command]
    # `attach --json` ends with the job's end: the endless job does not run on unread.
    events = ccxctl(daemon, "attach", "--json", job["id"]).stdout.splitlines()
    assert json.loads(events[-1])["data"]["job"]["reason"] == "cancelled"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "--memory", "2X", "true"], ['got "2X"', "512M", "$.params.memory"]),
        (["history", "list", "--status", "bogus"], ["'bogus'", "one of: queued", "$.params.status"]),
    ],
)
def test_a_refused_value_is_named_with_the_accepted_form_in_words(daemon, args, needles):
    res = ccxctl(daemon, *args)
    assert res.returncode == 2 and res.stdout == b""
    [line] = res.stderr.decode().splitlines()
    assert all(n in line for n in needles), line
    assert "regex" not in line


def test_daemon_not_running_is_one_line_and_exit_69(tmp_root):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCXD_")}
    env["CCXD_SOCKET"] = str(tmp_root / "nothing.sock")
    for args in (["run", "true"], ["ps"], ["status"]):
        res = subprocess.run(
            [sys.executable, "-m", "ccxctl", *args], env=env, capture_output=True, timeout=30
        )
        assert res.returncode == 69, args
        assert len(res.stderr.splitlines()) == 1 and b"ccxd is not running" in res.stderr
        assert b"start it with" in res.stderr


def test_ps_status_signal_pause_resume(daemon):
    job_id = (
        ccxctl(daemon, "run", "-d", "echo ready; while true; do sleep 0.05; done").stdout.decode().strip()
    )
    listed = json.loads(ccxctl(daemon, "ps", "--json").stdout)
    assert [j["id"] for j in listed] == [job_id]
    table = ccxctl(daemon, "ps").stdout
    assert not ANSI.search(table) and table.splitlines()[0].split(b"\t")[:2] == [b"id", b"state"]
    paused = json.loads(ccxctl(daemon, "pause", job_id, "--json").stdout)
    assert paused["state"] == "paused"
    with open(f"/proc/{paused['pid']}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] == "T"  # really stopped
    assert json.loads(ccxctl(daemon, "resume", job_id, "--json").stdout)["state"] == "running"
    st = json.loads(ccxctl(daemon, "status", "--json").stdout)
    assert st["jobs"]["running"] == 1 and st["pid"] == daemon.proc.pid
    plain = ccxctl(daemon, "status").stdout.decode()
    assert "version\t" in plain and not ANSI.search(plain.encode())
    res = ccxctl(daemon, "signal", job_id, "TERM", "--json")
    assert res.returncode == 0
    final = ccxctl(daemon, "attach", job_id)
    assert final.returncode == 128 + signal.SIGTERM
    assert ccxctl(daemon, "signal", job_id, "NOPE").returncode == 2  # a usage error, like any bad value


def test_cancel_prints_how_the_job_ended_and_ps_says_where_finished_jobs_are(daemon):
    # A job that ignores SIGTERM ends by SIGKILL after kill_grace: cancel reports that end.
    job_id = ccxctl(daemon, "run", "-d", "trap '' TERM; echo ready; sleep 300").stdout.decode().strip()
    res = ccxctl(daemon, "cancel", job_id)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().split("\t") == [job_id, "finished", "cancelled\n"]
    empty = ccxctl(daemon, "ps").stdout.decode().splitlines()
    assert empty[0].startswith("id\tstate") and len(empty) == 2
    assert "1 finished job" in empty[1] and "ccxctl ps --all" in empty[1]


def test_every_command_speaks_json(daemon):
    job_id = ccxctl(daemon, "run", "-d", "--session", "s1", "echo x").stdout.decode().strip()
    ccxctl(daemon, "attach", job_id)
    for args in (
        ["ps", "--all"],
        ["status"],
        ["logs", job_id],
        ["history", "list"],
        ["history", "show", job_id],
        ["history", "stats"],
        ["sessions", "list"],
        ["sessions", "show", "s1"],
        ["attach", job_id],
        ["history", "prune", "--keep", "1000"],
    ):
        res = ccxctl(daemon, *args, "--json")
        assert res.returncode == 0, (args, res.stderr)
        for line in res.stdout.splitlines():
            json.loads(line)


def test_history_and_sessions(daemon):
    for i in range(3):
        ccxctl(daemon, "run", "--session", "review", f"echo run {i}")
    ccxctl(daemon, "run", "--timeout", "0.3", "sleep 10")
    lines = ccxctl(daemon, "history", "list", "--session", "review").stdout.decode().splitlines()
    assert len(lines) == 4 and lines[1].endswith("echo run 2")
    timeouts = json.loads(ccxctl(daemon, "history", "list", "--status", "timeout", "--json").stdout)
    assert [j["command"] for j in timeouts] == ["sleep 10"]
    assert json.loads(ccxctl(daemon, "history", "list", "--grep", "^echo", "--since", "1h", "--json").stdout)
    show = ccxctl(daemon, "history", "show", timeouts[0]["id"]).stdout.decode()
    assert "outcome:  timeout" in show
    stats = json.loads(ccxctl(daemon, "history", "stats", "echo", "run", "9", "--json").stdout)
    assert stats[0]["signature"] == "echo run <n>" and stats[0]["count"] == 3
    sessions = json.loads(ccxctl(daemon, "sessions", "list", "--json").stdout)
    assert [(s["name"], s["jobs"]) for s in sessions] == [("review", 3)]
