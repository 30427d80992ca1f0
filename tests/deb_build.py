"""The .deb of this tree, built once per content (packaging tests and system tests share it)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["CACHE", "build_deb"]

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ccxd-ci"
# What the .deb is built from: a change in any of these builds a new one.
_INPUTS = ("ccxd", "ccxctl", "packaging", "systemd", "man", "pyproject.toml", "requirements", "README.md")
_KEEP = 3  # builds kept (other worktrees on the machine may be using theirs)


def _source_key() -> str:
    digest = hashlib.sha256()
    for name in _INPUTS:
        top = REPO / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_deb() -> Path:
    """``packaging/build-deb`` of the working tree, cached in ``CACHE/deb/<content key>/``."""
    store = CACHE / "deb"
    out_dir = store / _source_key()
    found = sorted(out_dir.glob("ccxd_*.deb")) if out_dir.is_dir() else []
    if found:
        os.utime(out_dir)
        return found[-1]
    store.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(out_dir) + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    res = subprocess.run(
        [str(REPO / "packaging" / "build-deb"), str(tmp)], capture_output=True, text=True, timeout=1200
    )
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"packaging/build-deb failed:\n{res.stderr}")
    try:
        tmp.rename(out_dir)
    except OSError:  # built at the same time by another run: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    builds = sorted((p for p in store.iterdir() if ".tmp" not in p.name), key=lambda p: p.stat().st_mtime)
    for old in builds[:-_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return sorted(out_dir.glob("ccxd_*.deb"))[-1]
