"""A secret kept in a file of our own: made once (0600, O_EXCL, never through a symlink), then read.

The WebSocket token and the store key live in such files.  Reading one checks
that it is a regular file owned by us; a file others could read is either
tightened to 0600 (the token: a client may have made it with a loose umask) or
refused (the store key: it may have leaked, so it is no key).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Literal

__all__ = ["load_or_create"]


def load_or_create(
    path: Path,
    what: str,
    make: Callable[[], bytes],
    *,
    open_to_others: Literal["tighten", "refuse"],
    hint: str = "",
) -> tuple[bytes, bool]:
    """The bytes of the secret file ``path`` and whether they were just made by ``make()``.

    ``what`` names the file in messages ("the token file"); ``hint`` ends a
    refusal (": remove it and ...").  Raises PermissionError with one line.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return _read(path, what, open_to_others, hint), False
    data = make()
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return data, True


def _read(path: Path, what: str, open_to_others: Literal["tighten", "refuse"], hint: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise PermissionError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(f"{what} {path} is not a regular file")
        if st.st_uid != os.getuid():
            mine = os.getuid()
            raise PermissionError(f"{what} {path} is owned by uid {st.st_uid}, not by us ({mine}){hint}")
        if st.st_mode & 0o077:
            if open_to_others == "refuse":
                raise PermissionError(
                    f"{what} {path} is open to others (mode {stat.S_IMODE(st.st_mode):04o}) "
                    f"and may have leaked{hint}"
                )
            os.fchmod(fd, 0o600)
        return os.read(fd, 4096)
    finally:
        os.close(fd)
