"""The per-job shim (``ccxd-shim.c``): where its binary is, how it is built, whether it is current.

The shim is a small C program, compiled once into this folder: by the package
build (``setup.py``: wheels, sdists, ``pip``/``pipx install``), by
``python -m ccxd.supervision.shim`` (``scripts/dev``) or by ``packaging/build-deb``.  With
``musl-gcc`` it is a static binary of about 60 KiB whose resident set is about
64 KiB per job; with the system ``cc`` it links glibc dynamically (about 1.6 MiB
RSS, 160 KiB PSS).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ccxd.supervision.shim.build import built_from, compile_shim, source_digest

__all__ = ["SHIM_NAME", "SOURCE", "ShimState", "build", "find_shim", "shim_state"]

SHIM_NAME = "ccxd-shim"
SOURCE = Path(__file__).with_name("ccxd-shim.c")
BUILT = Path(__file__).with_name(SHIM_NAME)


def find_shim(configured: str = "") -> str | None:
    """The shim to use: ``configured``, else the one built here, else ``ccxd-shim`` on PATH."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    if os.access(BUILT, os.X_OK):
        return str(BUILT)
    return shutil.which(SHIM_NAME)


def build(dest: Path = BUILT) -> Path:
    """Compile the shim into ``dest`` (static with musl-gcc when present)."""
    compile_shim(SOURCE, dest)
    return dest


@dataclass(frozen=True)
class ShimState:
    """What the daemon's job shim is: a path, or why there is none, and the fix."""

    path: str | None
    problem: str = ""
    fix: str = ""

    def line(self) -> str:
        """One line for ``ccxctl status``: the path, or the problem and its fix."""
        if not self.problem:
            return str(self.path)
        return f"{self.problem} — fix: {self.fix}" if self.fix else self.problem


def rebuild_hint() -> str:
    """The command that rebuilds the shim of this installation."""
    if os.access(BUILT.parent, os.W_OK):
        return f"{sys.executable} -m ccxd.supervision.shim (needs gcc; musl-tools for a static one)"
    return "reinstall ccxd (sudo apt install --reinstall ccxd, or pipx reinstall ccxd)"


def shim_state(configured: str = "", enabled: bool = True) -> ShimState:
    """Which shim a daemon with this config uses, and whether it is missing or stale."""
    if not enabled:
        return ShimState(None, "off (job_shim = false): jobs end with the daemon")
    found = find_shim(configured)
    if found is None:
        what = f"shim_path {configured} is not an executable" if configured else "ccxd-shim is not built"
        return ShimState(None, f"missing: {what}; jobs end with the daemon", rebuild_hint())
    if Path(found) == BUILT:
        recorded = built_from(BUILT)
        if recorded is not None and recorded != source_digest(SOURCE):
            return ShimState(
                found, f"stale: {found} was built from another ccxd-shim.c than {SOURCE}", rebuild_hint()
            )
    return ShimState(found)
