"""``ccxctl run``'s options: the fast path (no typer) and the typer command read them alike."""

from __future__ import annotations

import pytest

from ccxctl import app as app_mod
from ccxctl.commands import run as run_cmd
from ccxctl.fastpath import parse_run
from ccxctl.runjob import RunOptions

CASES = [
    ["true"],
    ["-d", "--timeout", "5", "--idle-timeout=2.5", "--cwd", "/tmp", "echo", "hi"],
    ["-e", "A=1", "--env", "B=2", "--tag", "x", "--tag=y", "--shell", "bash", "--session", "s", "ls"],
    ["--argv", "--memory", "512M", "--cpus", "1.5", "--pids", "20", "--group", "g", "--", "ls", "-l"],
    ["--priority", "high", "--after", "j1", "--after-any", "j2", "--worktree", "--json", "make"],
    ["--priority=-5", "make", "--timeout", "3"],
]


def typer_options(args: list[str], monkeypatch: pytest.MonkeyPatch) -> RunOptions:
    """What the typer command hands to run_job for ``ccxctl run ARGS``."""
    seen: list[RunOptions] = []

    def fake_run_job(opts: RunOptions) -> int:
        seen.append(opts)
        return 0

    monkeypatch.setattr(run_cmd, "run_job", fake_run_job)
    assert app_mod.run_app(["run", *args]) == 0
    return seen[0]


@pytest.mark.parametrize("args", CASES)
def test_the_fast_path_and_typer_read_the_same_options(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CCXD_SOCKET", "CCXD_URL", "CCXD_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    fast = parse_run(args)
    assert fast is not None
    assert fast == typer_options(args, monkeypatch)


def test_what_the_fast_path_cannot_read_goes_to_typer() -> None:
    assert parse_run(["--priority", "urgent", "make"]) is None  # typer names the option
    assert parse_run(["--pids", "many", "make"]) is None
    assert parse_run(["--frobnicate", "make"]) is None
    assert parse_run(["--detach=yes", "make"]) is None
    assert parse_run(["--timeout"]) is None
    assert parse_run(["-d"]) is None  # no command


def test_the_fast_path_takes_the_daemon_address_after_run() -> None:
    opts = parse_run(["--socket", "/run/x.sock", "--token-file=/t", "--url", "ws://h:1/ws", "true"])
    assert opts is not None
    assert (opts.socket, opts.url, opts.token_file) == ("/run/x.sock", "ws://h:1/ws", "/t")
