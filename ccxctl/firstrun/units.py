"""The systemd user units: where they are, installing them for non-packaged ccxd, systemctl."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from ccxd import paths

__all__ = [
    "PACKAGED_DIRS",
    "UNIT_NAMES",
    "ccxd_executable",
    "installed_unit",
    "systemctl",
    "unit_text",
    "user_manager_running",
    "user_unit_dir",
]

UNIT_NAMES = ("ccxd.service", "ccxd.socket")
"""The units ``ccxctl init`` installs and enables (ccxd-websocket.socket is opt-in)."""

PACKAGED_DIRS = (
    Path("/usr/lib/systemd/user"),
    Path("/etc/systemd/user"),
    Path("/usr/local/lib/systemd/user"),
)
"""Where a package puts user units; a unit there needs no copy in the home directory."""


def user_unit_dir() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user``, where a user's own units live."""
    return paths.config_dir().parent / "systemd" / "user"


def installed_unit(name: str) -> Path | None:
    """The unit file systemd would load for ``name``, if any."""
    for d in (user_unit_dir(), *PACKAGED_DIRS):
        if (d / name).exists():
            return d / name
    return None


def ccxd_executable() -> str:
    """The ``ccxd`` that belongs to this ``ccxctl`` (same virtualenv), else the one on PATH."""
    beside = Path(sys.argv[0]).resolve().parent / "ccxd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    prefix = Path(sys.prefix) / "bin" / "ccxd"
    if prefix.is_file():
        return str(prefix)
    return shutil.which("ccxd") or "/usr/bin/ccxd"


def unit_text(name: str, executable: str) -> str:
    """The unit as shipped, with ``ExecStart=`` pointing at ``executable``."""
    text = resources.files("ccxctl.firstrun").joinpath("units", name).read_text(encoding="utf-8")
    return text.replace("ExecStart=/usr/bin/ccxd", f"ExecStart={executable}")


def systemctl(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``systemctl --user ARGS`` (output captured)."""
    return subprocess.run(
        ["systemctl", "--user", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def user_manager_running() -> bool:
    """A systemd user manager answers for us (so units can be enabled and started)."""
    if shutil.which("systemctl") is None:
        return False
    try:
        return systemctl("show-environment", timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
