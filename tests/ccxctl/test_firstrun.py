"""``ccxctl init`` and ``ccxctl doctor`` as a user runs them, on private XDG directories."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ccxd.config import Config, load


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CCXD_", "XDG_", "DBUS_")) and k not in ("REDIS_URL", "LOG_LEVEL")
    }
    # A private XDG_RUNTIME_DIR and no session bus: systemctl --user finds no manager,
    # so the tests never touch a real user session's units.
    env.update(
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_RUNTIME_DIR=str(root / "run"),
        XDG_STATE_HOME=str(root / "state"),
    )
    env.update(extra)
    return env


def _ccxctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_init_writes_config_and_token_and_changes_nothing_without_a_yes(tmp_path: Path) -> None:
    env = _env(tmp_path)
    config = tmp_path / "config" / "ccxd" / "config.toml"
    token = tmp_path / "config" / "ccxd" / "token"

    first = _ccxctl(env, "init")
    assert first.returncode == 0, first.stderr
    assert f"created   {config}" in first.stdout and f"created   {token}" in first.stdout
    assert "no systemd user manager" in first.stdout
    assert load(config, environ={}).config == Config()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    secret = token.read_text()

    edited = config.read_text() + "max_concurrent_jobs = 3\n"
    config.write_text(edited)
    again = _ccxctl(env, "init")  # stdin is not a terminal: nothing is asked, nothing replaced
    assert again.returncode == 0, again.stderr
    assert "kept" in again.stdout and "--yes" in again.stdout
    assert config.read_text() == edited and token.read_text() == secret

    forced = _ccxctl(env, "init", "--yes")
    assert forced.returncode == 0, forced.stderr
    assert load(config, environ={}).config == Config()
    assert (config.parent / "config.toml.bak").read_text() == edited
    assert token.read_text() == secret  # a token is never replaced: clients hold it


def _lines(out: str) -> dict[str, str]:
    return {line[6:19].strip(): line for line in out.splitlines()}


def test_doctor_with_a_running_daemon(daemon) -> None:  # type: ignore[no-untyped-def]
    env = dict(daemon.env)
    proc = _ccxctl(env, "doctor")
    lines = _lines(proc.stdout)
    assert lines["daemon"].startswith("ok") and str(daemon.socket) in lines["daemon"]
    assert lines["socket"].startswith("ok") and "(0600)" in lines["socket"]
    assert lines["socket dir"].startswith("ok") and "(0700)" in lines["socket dir"]
    assert lines["token"].startswith("ok") and "(0600)" in lines["token"]
    assert lines["redis-server"].startswith("ok")
    assert {"config", "shell", "claude", "cgroups", "systemd unit", "port"} <= set(lines)
    assert proc.returncode == 0, proc.stdout


def test_doctor_says_what_is_wrong_and_how_to_fix_it(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    token = tmp_path / "token"
    token.write_text("x" * 43 + "\n")
    token.chmod(0o644)
    env = _env(tmp_path, PATH="/nonexistent", CCXD_WS_PORT=str(port), CCXD_WS_TOKEN_FILE=str(token))
    try:
        proc = _ccxctl(env, "doctor")
    finally:
        busy.close()
    lines = _lines(proc.stdout)
    assert lines["redis-server"].startswith("FAIL") and "apt install redis-server" in lines["redis-server"]
    assert lines["shell"].startswith("WARN") and "apt install zsh" in lines["shell"]
    assert (
        lines["claude"].startswith("WARN") and "npm install -g @anthropic-ai/claude-code" in lines["claude"]
    )
    assert lines["token"].startswith("FAIL") and f"chmod 600 {token}" in lines["token"]
    assert (
        lines["port"].startswith("FAIL")
        and f"127.0.0.1:{port}" in lines["port"]
        and "ws_port" in lines["port"]
    )
    assert lines["daemon"].startswith("WARN")
    assert proc.returncode == 1


def test_doctor_right_after_a_daemon_stopped_finds_its_port_free(tmp_path: Path) -> None:
    # A daemon that just stopped leaves its closed connections in TIME-WAIT on the port;
    # ccxd binds with SO_REUSEADDR, so the port is free for it, and the doctor must agree.
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end of the connection waits in TIME-WAIT
    client.close()
    server.close()
    with socket.socket() as s:  # what a bind without SO_REUSEADDR meets
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            pytest.skip("no TIME-WAIT connection held the port")
    proc = _ccxctl(_env(tmp_path, CCXD_WS_PORT=str(port)), "doctor")
    assert _lines(proc.stdout)["port"].startswith("ok") and "is free" in _lines(proc.stdout)["port"], proc.stdout


def test_doctor_says_the_config_file_does_not_exist(tmp_path: Path) -> None:
    proc = _ccxctl(_env(tmp_path), "doctor")
    line = _lines(proc.stdout)["config"]
    assert str(tmp_path / "config" / "ccxd" / "config.toml") in line and "does not exist" in line, line
    assert "built-in defaults" in line


def test_doctor_checks_the_port_the_running_daemon_listens_on(daemon) -> None:  # type: ignore[no-untyped-def]
    # The daemon was started with CCXD_WS_PORT=0 (a free port); the doctor's own config says 8003.
    env = {k: v for k, v in daemon.env.items() if k != "CCXD_WS_PORT"}
    line = _lines(_ccxctl(env, "doctor").stdout)["port"]
    assert line.startswith("ok") and daemon.ws_url in line and ":8003" not in line, line


def test_ccxd_without_redis_server_says_in_one_line_what_to_install(tmp_path: Path) -> None:
    # PATH without redis-server, as after a pipx install on a machine without Redis.
    env = _env(tmp_path, PATH="/nonexistent", CCXD_WS_PORT="0")
    proc = subprocess.run(
        [sys.executable, "-m", "ccxd"], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 69
    said = [line for line in proc.stderr.splitlines() if line.startswith("ccxd:")]
    assert len(said) == 1, proc.stderr
    assert "needs redis-server" in said[0] and "apt install redis-server" in said[0]
    assert 'store = "memory"' in said[0] and "redis_url" in said[0]


def _fake_claude(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho '9.9.9 (Claude Code)'\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("how", ["environment", "config"])
def test_doctor_finds_the_claude_cli_claude_program_names(tmp_path: Path, how: str) -> None:
    cli = _fake_claude(tmp_path / "opt" / "claude-code" / "bin" / "claude")
    extra = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    if how == "environment":
        extra["CCXD_CLAUDE_PROGRAM"] = str(cli)
    else:
        config = tmp_path / "config" / "ccxd" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(f'claude_program = "{cli}"\n')
    line = _lines(_ccxctl(_env(tmp_path, **extra), "doctor").stdout)["claude"]
    assert line.startswith("ok") and f"{cli} (9.9.9 (Claude Code))" in line, line


def test_doctor_says_how_to_install_claude_or_where_to_point_claude_program(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(tmp_path, HOME=str(home), PATH=str(tmp_path / "empty"))  # no claude there, whatever is installed
    line = _lines(_ccxctl(env, "doctor").stdout)["claude"]
    assert line.startswith("WARN") and "claude CLI not found on PATH" in line, line
    assert "fix: npm install -g @anthropic-ai/claude-code, or point claude_program (CCXD_CLAUDE_PROGRAM)" in line

    missing = _env(tmp_path, HOME=str(home), CCXD_CLAUDE_PROGRAM=str(tmp_path / "no" / "claude"))
    line = _lines(_ccxctl(missing, "doctor").stdout)["claude"]
    assert line.startswith("WARN") and f"claude_program {tmp_path / 'no' / 'claude'} not found (" in line, line

    # Installed, but where PATH does not look (the CLI's own local install): say where it is.
    local = _fake_claude(home / ".claude" / "local" / "claude")
    line = _lines(_ccxctl(env, "doctor").stdout)["claude"]
    assert line.startswith("WARN") and f"claude CLI at {local} is not on PATH" in line, line
    assert f'fix: set claude_program = "{local}" in the config (or CCXD_CLAUDE_PROGRAM)' in line
