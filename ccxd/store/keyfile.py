"""The daemon's store key: ``store.key`` in its private state directory (0600, made on first start).

It seals what the daemon reads back from Redis and would act on
(``store/integrity.py``).  A key someone else could have read or written is no
key: the daemon refuses to start rather than trust it or quietly replace it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ccxd.store.integrity import KEY_BYTES

__all__ = ["load_or_create_key"]


def load_or_create_key(path: Path) -> bytes:
    """The key at ``path``, created (O_EXCL, 0600, never through a symlink) on first use.

    Raises PermissionError with a one-line message when the file is not a
    regular file of ours that only we can read and write, or is not a key.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return _read(path)
    key = os.urandom(KEY_BYTES)
    try:
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def _read(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise PermissionError(f"cannot read the store key {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(f"the store key {path} is not a regular file")
        if st.st_uid != os.getuid():
            raise PermissionError(
                f"the store key {path} is owned by uid {st.st_uid}, not by us ({os.getuid()}): "
                "remove it and start again (waiting Claude retries saved with it are not restored)"
            )
        if st.st_mode & 0o077:
            raise PermissionError(
                f"the store key {path} is open to others (mode {stat.S_IMODE(st.st_mode):04o}) and may have "
                "leaked: remove it and start again (waiting Claude retries saved with it are not restored)"
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise PermissionError(f"the store key {path} is not a key ({KEY_BYTES * 2} hex digits): remove it")
    return key
