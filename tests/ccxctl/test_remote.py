"""ccxctl against a remote daemon: ``--url ws://…`` with a token file, or CCXD_URL/CCXD_TOKEN."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def remote(daemon, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
    """ccxctl with no usable Unix socket, so it can only have reached the daemon over ``ws://``."""
    full = dict(daemon.env, CCXD_SOCKET="/nonexistent/ccxd.sock", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", *args], env=full, capture_output=True, timeout=timeout
    )


@pytest.mark.parametrize("first", [True, False], ids=["global-option-first", "run-first"])
def test_run_over_websocket_with_a_token_file(daemon, first):
    opts = ["--url", daemon.ws_url, "--token-file", str(daemon.token_path)]
    args = (
        [*opts, "run", "echo out; echo err >&2; exit 5"]
        if first
        else ["run", *opts, "echo out; echo err >&2; exit 5"]
    )
    res = remote(daemon, *args)
    assert (res.stdout, res.stderr, res.returncode) == (b"out\n", b"err\n", 5), res.stderr


def test_environment_names_the_daemon_and_the_token(daemon):
    env = {"CCXD_URL": daemon.ws_url, "CCXD_TOKEN": daemon.token}
    res = remote(daemon, "run", "printf 'a\\0b'", env=env)
    assert res.returncode == 0 and res.stdout == b"a\0b"
    # The job is the daemon's like any other: visible over the Unix socket too.
    listed = remote(daemon, "ps", "--all", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert any(job["command"] == "printf 'a\\0b'" and job["peer"].startswith("ws ") for job in jobs)


def test_status_over_websocket_is_the_same_daemon(daemon):
    res = remote(daemon, "--url", daemon.ws_url, "--token-file", str(daemon.token_path), "status", "--json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["pid"] == daemon.proc.pid


def test_a_wrong_or_missing_token_is_a_clear_error_and_runs_nothing(daemon, tmp_path: Path):
    bad = tmp_path / "token"
    bad.write_text("not-the-token-" * 3)
    marker = tmp_path / "ran"
    res = remote(daemon, "--url", daemon.ws_url, "--token-file", str(bad), "run", f"touch {marker}")
    assert res.returncode == 77 and b"authentication failed" in res.stderr, res.stderr
    res = remote(daemon, "--url", daemon.ws_url, "run", f"touch {marker}", env={"CCXD_TOKEN_FILE": ""})
    assert res.returncode == 77 and b"authentication failed" in res.stderr, res.stderr
    assert not marker.exists()


def test_a_url_without_a_path_reaches_the_daemon(daemon):
    """``ws://HOST:PORT`` means the daemon's endpoint: it used to answer "HTTP 404" with no hint."""
    bare = f"ws://127.0.0.1:{daemon.ws_port}"
    opts = ["--url", bare, "--token-file", str(daemon.token_path)]
    res = remote(daemon, *opts, "status", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["pid"] == daemon.proc.pid
    res = remote(daemon, *opts, "run", "echo over ws")
    assert (res.stdout, res.stderr, res.returncode) == (b"over ws\n", b"", 0)


@pytest.mark.parametrize("cmd", [("status",), ("run", "true")], ids=lambda c: c[0])
def test_an_http_url_is_one_line_saying_what_was_meant(daemon, cmd):
    """``http://…/ws`` used to be taken for a socket path ("no socket at http:/127.0.0.1…")."""
    res = remote(daemon, "--url", f"http://127.0.0.1:{daemon.ws_port}/ws", *cmd)
    assert res.returncode == 2, res.stderr
    assert res.stderr.decode() == (
        f"ccxctl: http://127.0.0.1:{daemon.ws_port}/ws: use ws:// or wss:// "
        f"(did you mean ws://127.0.0.1:{daemon.ws_port}/ws?)\n"
    )
    res = remote(daemon, "--url", "tcp://127.0.0.1:1", *cmd)
    assert res.returncode == 2 and res.stderr.count(b"\n") == 1, res.stderr
    assert b"expected a socket path, unix:PATH, or ws://HOST[:PORT][/ws]" in res.stderr


def test_a_wrong_path_says_where_the_endpoint_is(daemon):
    url = f"ws://127.0.0.1:{daemon.ws_port}/nothing"
    res = remote(daemon, "--url", url, "--token-file", str(daemon.token_path), "status")
    assert res.returncode == 1
    assert res.stderr.decode() == f"ccxctl: {url}: HTTP 404: no WebSocket endpoint there (ccxd serves /ws)\n"


def test_a_refused_run_over_websocket_says_why_and_exits_2_as_over_the_socket(daemon):
    opts = ["--url", daemon.ws_url, "--token-file", str(daemon.token_path)]
    res = remote(daemon, *opts, "run", "--memory", "2X", "true")
    assert res.returncode == 2 and res.stdout == b""
    [line] = res.stderr.decode().splitlines()
    assert line.startswith("ccxctl: invalid params:") and 'got "2X"' in line and "unexpected" not in line
