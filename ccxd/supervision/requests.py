"""Checks of what a client asks for that no exec would tell it in words: text, signals, shells."""

from __future__ import annotations

import os
import signal as signal_mod

from ccxd.errors import InvalidRequest
from ccxd.protocol import StartParams

__all__ = ["check_text", "parse_signal", "shell_name"]

_MAX_ARG_STRLEN = 32 * 4096
"""Linux MAX_ARG_STRLEN (32 pages), the terminating NUL included."""


def parse_signal(value: int | str) -> int:
    """A signal number from ``9``, ``"9"``, ``"KILL"`` or ``"SIGKILL"``."""
    if isinstance(value, int) or value.strip().isdigit():
        num = int(value)
        try:
            signal_mod.Signals(num)
        except ValueError:
            raise InvalidRequest(f"unknown signal number {num}") from None
        return num
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal_mod.Signals[name])
    except KeyError:
        raise InvalidRequest(f"unknown signal {value!r}") from None


def shell_name(name: str) -> str:
    """The shell a request's ``shell`` names (``default`` is ``/bin/sh``)."""
    return "/bin/sh" if name == "default" else name


def check_text(params: StartParams) -> None:
    """Refuse what no exec can carry (NUL bytes, over-long arguments), saying where it is."""
    parts: list[tuple[str, str]] = []
    if isinstance(params.command, str):
        parts.append(("command", params.command))
    else:
        parts += [(f"command[{i}]", a) for i, a in enumerate(params.command or ())]
    if params.cwd is not None:
        parts.append(("cwd", params.cwd))
    if params.shell is not None:
        parts.append(("shell", params.shell))
    for k, v in params.env.items():
        if not k or "=" in k:
            raise InvalidRequest(f"invalid environment name {k!r} at $.params.env")
        parts += [(f"env.{k}", k), (f"env.{k}", v)]
    for where, text in parts:
        if "\0" in text:
            raise InvalidRequest(f"NUL byte not allowed - at `$.params.{where}`")
    if params.cwd is not None and not os.path.isabs(params.cwd):
        raise InvalidRequest(f"cwd must be an absolute path, got {params.cwd!r} - at `$.params.cwd`")
    # The kernel refuses any single argument or environment entry longer than this (E2BIG);
    # say which one up front instead of failing at exec.
    if isinstance(params.command, str):
        sized = [("command", len(params.command.encode()) + 1)]
    else:
        sized = [(f"command[{i}]", len(a.encode()) + 1) for i, a in enumerate(params.command or ())]
    sized += [(f"env.{k}", len(k.encode()) + len(v.encode()) + 2) for k, v in params.env.items()]
    for where, size in sized:
        if size > _MAX_ARG_STRLEN:
            raise InvalidRequest(
                f"{where} is {size - 1} bytes; the kernel limit for one argument or environment "
                f"entry is {_MAX_ARG_STRLEN - 1} - at `$.params.{where}`",
            )
