"""Built-in ``venv`` pre hook: run the job inside the virtualenv of its directory.

Looks for ``.venv`` or ``venv`` (a directory with ``pyvenv.cfg``) in the job's
cwd and each parent, and sets ``VIRTUAL_ENV`` and ``PATH`` as ``activate``
would.  A job that sets ``VIRTUAL_ENV`` itself is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from ccxd.hooks.context import HookContext, HookResult

__all__ = ["find_venv", "venv_hook"]

_NAMES = (".venv", "venv")


def find_venv(start: Path) -> Path | None:
    """The nearest ``.venv``/``venv`` at or above ``start``."""
    for directory in (start, *start.parents):
        for name in _NAMES:
            candidate = directory / name
            if (candidate / "pyvenv.cfg").is_file() and (candidate / "bin").is_dir():
                return candidate
    return None


def venv_hook(ctx: HookContext) -> HookResult:
    """Activate the nearest virtualenv (a plain function: it touches the file system)."""
    if "VIRTUAL_ENV" in ctx.env:
        return HookResult.allow("job sets VIRTUAL_ENV itself")
    start = Path(ctx.cwd or os.environ.get("HOME", "/"))
    venv = find_venv(start)
    if venv is None:
        return HookResult.allow(f"no .venv or venv at or above {start}")
    path = ctx.env.get("PATH") or os.environ.get("PATH", os.defpath)
    return HookResult.change(
        f"activated {venv}",
        env={"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{path}"},
    )
