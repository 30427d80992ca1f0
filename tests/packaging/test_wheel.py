"""The pip/pipx route: an sdist and wheel built from a clean clone, installed into a fresh venv.

``python -m build`` on a ``git clone`` of this repository (its committed state:
a working tree's uncommitted edits are not in it), ``twine check`` on both
files, then the wheel into a new virtualenv *without* the constraints file, so
its dependencies are the highest versions ``pyproject.toml`` allows (the rest of
the suite runs on the pinned, lowest ones).  That installation's own ``ccxd``
must keep a job running across ``kill -9`` and adopt it on restart: proof that
the wheel carries a working ``ccxd-shim``.  ``ccxctl doctor`` and ``status``
from the venv must then tell a missing or stale shim, with the fix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccxd.protocol import JobFinished, OutputChunk
from tests.conftest import REQUIRE_TOOLS, DaemonProcess, require_tool
from tests.helpers import job_pids

REPO = Path(__file__).resolve().parents[2]
SHIM = "ccxd/supervision/shim/ccxd-shim"

# Six lines over about three seconds: it outlives the daemon's kill and restart.
JOB = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done"


def _run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        message = f"{module} is not installed (pip install -c requirements/constraints.txt -e .[test])"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built by ``python -m build`` from a fresh clone."""
    _need("build")
    require_tool("git")
    require_tool("cc")
    work = tmp_path_factory.mktemp("wheel")
    _run("git", "clone", "-q", "--no-local", REPO, work / "src")
    assert not (work / "src" / SHIM).exists()
    _run(sys.executable, "-m", "build", "--outdir", work / "dist", work / "src", cwd=work)
    sdist = next((work / "dist").glob("ccxd-*.tar.gz"))
    wheel = next((work / "dist").glob("ccxd-*.whl"))
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(dists: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and the newest dependencies it allows."""
    root = tmp_path_factory.mktemp("venv") / "v"
    base = getattr(sys, "_base_executable", sys.executable)
    _run(base, "-m", "venv", root)
    _run(root / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", dists[1])
    return root


def test_sdist_and_wheel_pass_twine_check_and_the_wheel_carries_the_shim(dists: tuple[Path, Path]) -> None:
    _need("twine")
    sdist, wheel = dists
    out = _run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
    assert out.count("PASSED") == 2, out

    # A native program inside: the wheel is for one platform, never py3-none-any.
    assert wheel.name.startswith("ccxd-0.") and wheel.name.endswith(("_x86_64.whl", "_aarch64.whl"))
    assert "-py3-none-" in wheel.name and "-any.whl" not in wheel.name
    with zipfile.ZipFile(wheel) as z:
        info = z.getinfo(SHIM)
        assert (info.external_attr >> 16) & 0o111, "the shim is not executable in the wheel"
        assert z.read(SHIM)[:4] == b"\x7fELF"
        # Built from the source it ships with (ccxctl doctor tells a stale one by this record).
        assert z.read(SHIM + ".sha256").decode().strip() == hashlib.sha256(z.read(SHIM + ".c")).hexdigest()
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    for field in ("License-Expression: GPL-3.0-or-later", "Project-URL: Source", "Classifier: ", "Requires-Dist: "):
        assert field in metadata, field
    assert "Description-Content-Type: text/markdown" in metadata

    # The sdist has the source and the build hook, never a binary from the tree it came from.
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"setup.py", "LICENSE", SHIM + ".c"} <= names
    assert SHIM not in names


def _daemon(root: Path, venv: Path) -> DaemonProcess:
    d = DaemonProcess(root)
    # The venv's console script: sys.path[0] is its bin/, so nothing of this tree is imported.
    d.command = [str(venv / "bin" / "ccxd")]
    return d


async def test_the_wheel_s_daemon_adopts_a_job_across_kill_9(venv: Path, tmp_root: Path) -> None:
    root = tmp_root / "d"
    first = _daemon(root, venv).start()
    try:
        c = await first.client()
        st = await c.status()
        assert st.shim.startswith(str(venv)), st.shim  # the wheel's own shim, not this tree's
        job = await c.start(JOB, subscribe=True)
        async for ev in c.events(job.id):
            if isinstance(ev, OutputChunk) and b"line 1\n" in ev.raw():
                break
        await c.close()
    finally:
        first.stop(signal.SIGKILL)
    assert job_pids(job.id), "the job died with the daemon"

    second = _daemon(root, venv).start()
    try:
        c = await second.client()
        adopted = await c.get(job.id)
        assert adopted.state in ("running", "finished"), adopted
        out = b""
        async for ev in c.follow(job.id):
            if isinstance(ev, OutputChunk):
                out += ev.raw()
            elif isinstance(ev, JobFinished):
                done = ev.job
                break
        await c.close()
    finally:
        second.stop()
    assert out == b"".join(b"line %d\n" % i for i in range(1, 7))
    assert done.reason == "exited" and done.exit_code == 0


def _ccxctl(venv: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "ccxctl"), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _line(proc: subprocess.CompletedProcess[str], name: str) -> str:
    found = [line for line in proc.stdout.splitlines() if line[6:19].strip() == name]
    assert found, f"no {name} line in:\n{proc.stdout}\n{proc.stderr}"
    return found[0]


@pytest.fixture
def broken_venv(venv: Path, tmp_path: Path) -> Iterator[Path]:
    """The venv, whose installed shim a test may remove or make stale (restored after)."""
    site = next(venv.glob("lib/python3*/site-packages"))
    shim_dir = site / "ccxd" / "supervision" / "shim"
    saved = tmp_path / "saved"
    shutil.copytree(shim_dir, saved)
    yield shim_dir
    shutil.rmtree(shim_dir)
    shutil.copytree(saved, shim_dir)


async def test_doctor_and_status_tell_a_missing_or_stale_shim(
    venv: Path, broken_venv: Path, tmp_root: Path
) -> None:
    d = _daemon(tmp_root / "d", venv)
    env = {**d.env, "CCXD_WS_PORT": "0"}
    healthy = _ccxctl(venv, env, "doctor")
    assert _line(healthy, "shim").startswith("ok") and "static" in _line(healthy, "shim")

    # A newer source next to the binary: the binary is stale.
    with open(broken_venv / "ccxd-shim.c", "a") as f:
        f.write("/* changed */\n")
    stale = _line(_ccxctl(venv, env, "doctor"), "shim")
    assert stale.startswith("FAIL") and "stale" in stale and "-m ccxd.supervision.shim" in stale, stale

    # No binary: jobs would end with the daemon; the daemon says so in its status too.
    (broken_venv / "ccxd-shim").unlink()
    missing = _ccxctl(venv, env, "doctor")
    line = _line(missing, "shim")
    assert line.startswith("FAIL") and "jobs end with the daemon" in line and "fix:" in line, line
    assert missing.returncode == 1
    d.start()
    try:
        status = _ccxctl(venv, d.env, "status")
        shim = next(x for x in status.stdout.splitlines() if x.startswith("shim"))
        assert "missing" in shim and "-m ccxd.supervision.shim" in shim, status.stdout
        running = _line(_ccxctl(venv, d.env, "doctor"), "shim")
        assert running.startswith("FAIL") and "the running ccxd: missing" in running, running
    finally:
        d.stop()

    # The fix the doctor gives works.
    _run(venv / "bin" / "python", "-m", "ccxd.supervision.shim", cwd=tmp_root)
    assert _line(_ccxctl(venv, env, "doctor"), "shim").startswith("ok")
    assert os.access(broken_venv / "ccxd-shim", os.X_OK)
