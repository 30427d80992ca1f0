"""The per-job shim (``ccxd-shim.c``): where its binary is and how it is built.

The shim is a small C program, compiled once (``python -m ccxd.supervision.shim``,
run by ``scripts/dev setup`` and the package builds) into this folder.  With
``musl-gcc`` it is a static binary of about 60 KiB whose resident set is about
64 KiB per job; with the system ``cc`` it links glibc dynamically (about 1.6 MiB
RSS, 160 KiB PSS).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["SHIM_NAME", "SOURCE", "build", "find_shim"]

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
    musl = shutil.which("musl-gcc")
    cmd = [musl, "-O2", "-static", "-s"] if musl is not None else [os.environ.get("CC", "cc"), "-O2", "-s"]
    tmp = dest.with_name(dest.name + ".tmp")
    subprocess.run([*cmd, "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE)], check=True)
    tmp.replace(dest)
    return dest

