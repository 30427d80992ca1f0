"""Where ccxd keeps its files, following the XDG base directories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["config_dir", "ensure_private_dir", "in_memory", "jobs_dir", "runtime_dir", "state_dir"]


def _xdg(var: str, fallback: Path) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else fallback


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/ccxd``, or a private ``/tmp/ccxd-UID`` when that is unset."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isabs(base):
        return Path(base) / "ccxd"
    return Path(f"/tmp/ccxd-{os.getuid()}")


def jobs_dir(socket_path: Path) -> Path:
    """Where the daemon serving ``socket_path`` keeps job files and exit statuses.

    Runtime state: it matters only while a job's processes may still run, so it
    lives next to the socket (and its lock: one daemon at a time), which is on
    tmpfs under systemd (``$XDG_RUNTIME_DIR``).  Creating and deleting a few
    files per job there costs microseconds, on a busy ext4 up to a millisecond.
    """
    return socket_path.with_name(socket_path.name + ".jobs")


def state_dir() -> Path:
    """``$XDG_STATE_HOME/ccxd`` (default ``~/.local/state/ccxd``)."""
    return _xdg("XDG_STATE_HOME", Path.home() / ".local" / "state") / "ccxd"


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/ccxd`` (default ``~/.config/ccxd``)."""
    return _xdg("XDG_CONFIG_HOME", Path.home() / ".config") / "ccxd"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` as a 0700 directory owned by us, refusing anything else.

    A directory under /tmp could have been planted by another user; we never
    trust one we do not own or that others can write to.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} is owned by uid {st.st_uid}, not by us ({os.getuid()})")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def in_memory(path: Path) -> bool:
    """True if ``path`` is on a memory file system (tmpfs, ramfs), where file work costs microseconds."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return False
    target = os.path.realpath(path)
    best, kind = "", ""
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind in ("tmpfs", "ramfs")
