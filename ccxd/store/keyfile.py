"""The daemon's store key: ``store.key`` in its private state directory (0600, made on first start).

It seals what the daemon reads back from Redis and would act on
(``store/integrity.py``).  A key someone else could have read or written is no
key: the daemon refuses to start rather than trust it or quietly replace it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ccxd import secretfile
from ccxd.store.integrity import KEY_BYTES

__all__ = ["load_or_create_key"]


def load_or_create_key(path: Path) -> bytes:
    """The key at ``path``, created (O_EXCL, 0600, never through a symlink) on first use.

    Raises PermissionError with a one-line message when the file is not a
    regular file of ours that only we can read and write, or is not a key.
    """
    raw, _ = secretfile.load_or_create(
        path,
        "the store key",
        lambda: os.urandom(KEY_BYTES).hex().encode("ascii") + b"\n",
        open_to_others="refuse",
        hint=": remove it and start again (waiting Claude retries saved with it are not restored)",
    )
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise PermissionError(f"the store key {path} is not a key ({KEY_BYTES * 2} hex digits): remove it")
    return key
