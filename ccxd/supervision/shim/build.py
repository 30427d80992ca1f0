"""Compiling the job shim, and telling whether a built one is current (standard library only).

``setup.py`` loads this file by path while the package is built, before any
dependency is installed, so it imports nothing but the standard library.

Next to the binary a one-line ``ccxd-shim.sha256`` records the SHA-256 of the
source it was built from: a binary whose record does not match the source next
to it is stale (``ccxctl doctor`` and ``ccxctl status`` say so).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

__all__ = ["DIGEST_SUFFIX", "CompilerMissing", "built_from", "compile_shim", "is_static", "source_digest"]

DIGEST_SUFFIX = ".sha256"
"""``ccxd-shim.sha256``: the digest of the source the binary was built from."""

_PT_INTERP = 3


class CompilerMissing(Exception):
    """No C compiler to build the shim with."""


def source_digest(source: Path) -> str:
    """SHA-256 of the shim's source, as hex."""
    return hashlib.sha256(source.read_bytes()).hexdigest()


def built_from(binary: Path) -> str | None:
    """The source digest recorded next to ``binary``, or None when there is no record."""
    try:
        return binary.with_name(binary.name + DIGEST_SUFFIX).read_text().split()[0]
    except (OSError, IndexError):
        return None


def _compiler(environ: dict[str, str]) -> tuple[list[str], str]:
    musl = shutil.which("musl-gcc", path=environ.get("PATH"))
    if musl is not None:
        return [musl, "-O2", "-static", "-s"], "static, musl-gcc"
    for name in filter(None, (environ.get("CC"), "cc", "gcc", "clang")):
        found = shutil.which(name.split()[0], path=environ.get("PATH"))
        if found is not None:
            return [found, *name.split()[1:], "-O2", "-s"], f"dynamic, {os.path.basename(found)}"
    raise CompilerMissing(
        "ccxd-shim (the C program that keeps jobs running when the daemon dies) needs a C compiler: "
        "install one (Debian/Ubuntu: sudo apt install gcc musl-tools; macOS: xcode-select --install), "
        "or build without it with CCXD_BUILD_WITHOUT_SHIM=1 (jobs then end with the daemon)"
    )


def compile_shim(source: Path, dest: Path, environ: dict[str, str] | None = None) -> str:
    """Compile ``source`` into ``dest`` (static with musl-gcc when present) and record its digest.

    Returns how it was built ("static, musl-gcc" or "dynamic, cc").  Raises
    :class:`CompilerMissing`, or :class:`subprocess.CalledProcessError` when the
    compiler fails.
    """
    env = dict(os.environ if environ is None else environ)
    cmd, how = _compiler(env)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    subprocess.run([*cmd, "-Wall", "-Wextra", "-o", str(tmp), str(source)], check=True)
    tmp.replace(dest)
    dest.with_name(dest.name + DIGEST_SUFFIX).write_text(source_digest(source) + "\n")
    return how


def is_static(binary: Path) -> bool:
    """True for an ELF executable without a program interpreter (runs on any Linux of its arch)."""
    with open(binary, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        order = "<" if head[5] == 1 else ">"
        (phoff,) = struct.unpack_from(order + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        struct.unpack_from(order + "I", table, i * phentsize)[0] != _PT_INTERP for i in range(phnum)
    )
