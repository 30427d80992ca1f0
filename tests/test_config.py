"""Configuration: file, environment, legacy names, errors with exit code 78."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def ccxd(*args: str, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "cfg"),
        "XDG_RUNTIME_DIR": str(tmp / "run"),
        "XDG_STATE_HOME": str(tmp / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "ccxd", *args], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def settings(output: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in output.splitlines():
        body, _, source = line.rpartition("  # ")
        if body.startswith("# "):
            found[body[2:].split()[0]] = ("unset", source)
        else:
            key, _, value = body.partition(" = ")
            found[key] = (value, source)
    return found


def test_print_config_shows_values_and_sources(tmp_root):
    cfg = tmp_root / "cfg" / "ccxd"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text("kill_grace = 2.5\nmax_concurrent_jobs = 8\n")
    res = ccxd(
        "--print-config", env={"CCXD_MAX_CONCURRENT_JOBS": "3", "CC_EXECUTOR_SHELL": "bash"}, tmp=tmp_root
    )
    assert res.returncode == 0
    s = settings(res.stdout)
    assert s["kill_grace"] == ("2.5", str(cfg / "config.toml"))
    assert s["max_concurrent_jobs"] == ("3", "$CCXD_MAX_CONCURRENT_JOBS")
    assert s["shell"] == ('"bash"', "$CC_EXECUTOR_SHELL")
    assert s["buffer_size"] == ("8388608", "default")
    assert s["default_timeout"] == ("unset", "default")


@pytest.mark.parametrize(
    ("alias", "value", "key", "shown"),
    [
        ("CC_EXECUTOR_SHELL", "default", "shell", '"/bin/sh"'),
        ("CC_EXECUTOR_PORT", "9000", "ws_port", "9000"),
        ("CC_EXECUTOR_HOST", "127.0.0.2", "ws_host", '"127.0.0.2"'),
        # A password-less one is refused (tests/security/test_redis_authority.py); the password is never shown.
        ("REDIS_URL", "redis://ccxd:pw@localhost:6390/0", "redis_url", '"redis://ccxd:***@localhost:6390/0"'),
        ("STREAM_TIMEOUT", "120", "idle_timeout", "120.0"),
        ("MAX_BUFFER_SIZE", "1048576", "buffer_size", "1048576"),
        ("LOG_LEVEL", "DEBUG", "log_level", '"debug"'),
    ],
)
def test_cc_executor_names_still_work(tmp_root, alias, value, key, shown):
    res = ccxd("--print-config", env={alias: value}, tmp=tmp_root)
    assert settings(res.stdout)[key] == (shown, f"${alias}")


def test_ccxd_names_win_over_aliases(tmp_root):
    res = ccxd("--print-config", env={"STREAM_TIMEOUT": "5", "CCXD_IDLE_TIMEOUT": "7"}, tmp=tmp_root)
    assert settings(res.stdout)["idle_timeout"] == ("7.0", "$CCXD_IDLE_TIMEOUT")


@pytest.mark.parametrize(
    ("file_text", "env", "needles"),
    [
        ('kill_grace = "soon"\n', {}, ["kill_grace", "'soon'", "expected `float`"]),
        ("max_concurrent_jobs = 0\n", {}, ["max_concurrent_jobs", "0", ">= 1"]),
        ("no_such_key = 1\n", {}, ["unknown setting 'no_such_key'"]),
        ("kill_grace = [\n", {}, ["invalid TOML"]),
        ("", {"CCXD_BUFFER_SIZE": "lots"}, ["$CCXD_BUFFER_SIZE", "buffer_size", "'lots'", "int"]),
        ("", {"CCXD_LOG_LEVEL": "loud"}, ["log_level", "'loud'", "debug"]),
    ],
)
def test_bad_config_is_one_line_and_exit_78(tmp_root, file_text, env, needles):
    cfg = tmp_root / "cfg" / "ccxd"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(file_text)
    res = ccxd(env=env, tmp=tmp_root)
    assert res.returncode == 78
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0]


def test_explicit_config_path_must_exist(tmp_root):
    res = ccxd("--config", str(tmp_root / "missing.toml"), env={}, tmp=tmp_root)
    assert res.returncode == 78 and "not found" in res.stderr
