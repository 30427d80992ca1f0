"""A second local user who attacks: the ``ccxd-attacker`` account, and squatters it runs.

The victim is the user running the tests (root in CI); the attacker is a real
second uid, created once with ``useradd --system`` and reused.  Squatters are
:mod:`tests.security.squatter`, run as the attacker with the system Python.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_TOOLS, require_tool

ATTACKER = "ccxd-attacker"
SYSTEM_PYTHON = "/usr/bin/python3"
_MARK = ".ccxd-security-test"  # in a fallback directory the tests made themselves


def _need(condition: bool, message: str) -> None:
    if not condition:
        if REQUIRE_TOOLS:
            pytest.fail(message + " (CI requires it)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def attacker() -> int:
    """The attacker's uid (the account is created on first use)."""
    _need(os.geteuid() == 0, "attacks by a second uid need root to create and become it")
    require_tool("useradd")
    require_tool("runuser")
    _need(os.access(SYSTEM_PYTHON, os.X_OK), f"{SYSTEM_PYTHON} is missing")
    try:
        return pwd.getpwnam(ATTACKER).pw_uid
    except KeyError:
        pass
    res = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ATTACKER],
        capture_output=True,
        text=True,
    )
    if res.returncode not in (0, 9):  # 9: made meanwhile by a parallel run
        pytest.fail(f"useradd {ATTACKER} failed: {res.stderr.strip()}")
    return pwd.getpwnam(ATTACKER).pw_uid


@pytest.fixture
def lair(attacker: int) -> Iterator[Path]:
    """A directory the attacker can read and write (its squatter script and records)."""
    with tempfile.TemporaryDirectory(prefix="ccxd-sec-") as d:
        os.chmod(d, 0o777)
        script = Path(d) / "squatter.py"
        shutil.copyfile(Path(__file__).with_name("squatter.py"), script)
        os.chmod(script, 0o755)
        yield Path(d)


class Squatter:
    """A fake ccxd run as the attacker, recording what it receives."""

    def __init__(self, lair: Path, mode: str, where: str) -> None:
        self.record = lair / f"record-{mode}"
        self.proc = subprocess.Popen(
            ["runuser", "-u", ATTACKER, "--", SYSTEM_PYTHON, str(lair / "squatter.py"), mode, where, str(self.record)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd="/",
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()  # READY <where>: it listens from now on
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"the squatter did not start: {line!r}")
        self.where = line.split(" ", 1)[1].strip()

    def stop(self) -> tuple[bytes, int]:
        """Stop it; what it received (all connections) and how many connections it accepted."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        conns = Path(str(self.record) + ".conns").read_text().count("connection")
        return self.record.read_bytes(), conns


@pytest.fixture
def squat(lair: Path) -> Iterator:  # type: ignore[type-arg]
    """``squat(mode, where)`` starts a squatter; all are stopped after the test."""
    started: list[Squatter] = []

    def start(mode: str, where: str) -> Squatter:
        s = Squatter(lair, mode, where)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def fallback_dir(attacker: int) -> Iterator[Path]:
    """``/tmp/ccxd-UID``, where ccxctl and ccxd look when XDG_RUNTIME_DIR is unset; absent at the start."""
    path = Path(f"/tmp/ccxd-{os.getuid()}")

    def clear() -> None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return
        if st.st_uid != attacker and not (path / _MARK).exists():
            pytest.skip(f"{path} exists and is not a leftover of these tests: a real ccxd may use it")
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)

    clear()
    yield path
    clear()


def mark_as_test_dir(path: Path) -> None:
    """Mark a fallback directory the test itself made, so a later run may remove it."""
    (path / _MARK).touch()


def victim_env(**extra: str) -> dict[str, str]:
    """The victim's environment as cron or ``sudo -u`` give it: no XDG_RUNTIME_DIR, no ccxd settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "XDG_RUNTIME_DIR" and not k.startswith(("CCXD_", "CC_EXECUTOR_"))
    }
    env.update(extra)
    return env


def ccxctl(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run ccxctl as the victim."""
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", *args],
        env=env if env is not None else victim_env(),
        capture_output=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def one_line_refusal(res: subprocess.CompletedProcess[bytes]) -> str:
    """The single stderr line of a refused ccxctl (asserting there is exactly one and no traceback)."""
    err = res.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ccxctl: "), err
    return lines[0]


def outward_address() -> str:
    """An address of this machine that is not loopback (the one it would use outward)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # TEST-NET-2: nothing is sent
        except OSError:
            pytest.skip("this machine has no address but loopback")
        addr = str(s.getsockname()[0])
    if addr.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return addr
