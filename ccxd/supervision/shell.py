"""Choosing the shell that runs ``SHELL -c COMMAND``."""

from __future__ import annotations

import logging
import os
import shutil

__all__ = ["resolve_shell"]

log = logging.getLogger("ccxd.supervision")

_FALLBACKS = ("zsh", "bash", "sh")
_warned: set[str] = set()


def _find(name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


def resolve_shell(wanted: str, *, fallback: bool) -> str | None:
    """Path of ``wanted``; with ``fallback``, zsh → bash → /bin/sh, logged once."""
    found = _find(wanted)
    if found or not fallback:
        return found
    for name in _FALLBACKS[_FALLBACKS.index(wanted) + 1 if wanted in _FALLBACKS else 0 :]:
        found = _find(name)
        if found:
            if wanted not in _warned:
                _warned.add(wanted)
                log.warning("shell %s not found; using %s instead", wanted, found)
            return found
    return None
