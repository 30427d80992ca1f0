"""Files ccxd obeys (the config, hook files, the hooks directory) must be the user's own.

Another local user who can write the config or a hook file runs code as the
user.  So, as ssh does with its keys and ``authorized_keys``, such a file or
directory is refused when it is owned by anyone but the user or root, or when
its group or others may write it.  The refusal says which and how to fix it.
"""

from __future__ import annotations

import os
import pwd
import stat

__all__ = ["unsafe_reason", "unsafe_stat"]


def unsafe_reason(owner: int, mode: int, uid: int, owner_name: str = "") -> str | None:
    """Why a file of ``owner`` and ``mode`` must not be trusted by ``uid``; None when it may (no I/O)."""
    if owner not in (uid, 0):
        who = f"{owner_name} (uid {owner})" if owner_name else f"uid {owner}"
        return f"owned by {who}, not by you; chown it to yourself"
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = (
            "group and others"
            if mode & stat.S_IWGRP and mode & stat.S_IWOTH
            else ("its group" if mode & stat.S_IWGRP else "others")
        )
        return f"writable by {who} (mode {stat.S_IMODE(mode):04o}); chmod go-w it"
    return None


def unsafe_stat(st: os.stat_result) -> str | None:
    """:func:`unsafe_reason` for a stat result, against the effective uid."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(st.st_uid).pw_name if st.st_uid not in (uid, 0) else ""
    except KeyError:
        name = ""
    return unsafe_reason(st.st_uid, st.st_mode, uid, name)
