"""The systemd user units are accepted by systemd itself (systemd-analyze verify)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
UNITS = ["ccxd.service", "ccxd.socket", "ccxd-websocket.socket"]


def _ccxd_executable() -> str:
    found = Path(sys.executable).parent / "ccxd"
    return str(found) if found.exists() else shutil.which("ccxd") or "/usr/bin/ccxd"


def _verify(tmp_path: Path, texts: dict[str, str]) -> None:
    analyze = require_tool("systemd-analyze")
    require_tool("man")
    units = tmp_path / "units"
    units.mkdir()
    for name, text in texts.items():
        (units / name).write_text(text)
    # verify checks that every Documentation=man: page opens: point it at this tree's pages.
    manpath = tmp_path / "man"
    for page in (REPO / "man").iterdir():
        section = manpath / f"man{page.suffix[1:]}"
        section.mkdir(parents=True, exist_ok=True)
        (section / page.name).symlink_to(page)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), MANPATH=str(manpath), SYSTEMD_LOG_COLOR="0")
    proc = subprocess.run(
        [analyze, "verify", "--user", *(f"./{n}" for n in texts)],
        cwd=units,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # systemd-analyze exits 0 on many parse errors; anything it prints is a finding.
    assert proc.stderr == "" and proc.stdout == "", proc.stderr + proc.stdout
    assert proc.returncode == 0


def test_units_verify_clean(tmp_path: Path) -> None:
    # verify also checks that ExecStart= exists: use this tree's ccxd for /usr/bin/ccxd.
    exe = _ccxd_executable()
    _verify(
        tmp_path,
        {
            n: (REPO / "systemd" / n).read_text().replace("ExecStart=/usr/bin/ccxd", f"ExecStart={exe}")
            for n in UNITS
        },
    )


def test_units_installed_by_ccxctl_init_verify_clean(tmp_path: Path) -> None:
    from ccxctl.firstrun import units

    exe = _ccxd_executable()
    texts = {n: units.unit_text(n, exe) for n in UNITS}
    assert f"ExecStart={exe}\n" in texts["ccxd.service"]
    _verify(tmp_path, texts)


def test_service_keeps_jobs_and_the_watchdog() -> None:
    """The settings that decide job survival and supervision are the ones documented."""
    text = (REPO / "systemd" / "ccxd.service").read_text()
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["KillMode"] == "process"
    assert settings["Delegate"] == "yes"
    assert settings["Restart"] == "on-failure"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["WatchdogSec"]
    socket_unit = (REPO / "systemd" / "ccxd.socket").read_text()
    assert "FileDescriptorName=unix" in socket_unit and "SocketMode=0600" in socket_unit
    assert "FileDescriptorName=websocket" in (REPO / "systemd" / "ccxd-websocket.socket").read_text()
