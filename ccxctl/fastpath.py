"""Parse ``ccxctl run …`` without importing typer, for a fast start.

The options are :data:`ccxctl.runopts.RUN_OPTIONS`, the table the typer command
is built from, so both read the same spellings and types.  Only the common,
unambiguous forms are handled here; anything else (help, unknown options,
malformed values) returns None and the full typer CLI takes over, so both paths
end in the same :func:`ccxctl.runjob.run_job`.
"""

from __future__ import annotations

from ccxctl.runjob import RunOptions
from ccxctl.runopts import RUN_OPTIONS, TARGET_OPTIONS, Opt, OptionError, run_options

__all__ = ["parse_run"]

_BY_FLAG: dict[str, Opt] = {flag: opt for opt in (*RUN_OPTIONS, *TARGET_OPTIONS) for flag in opt.flags}
_TARGET = {opt.name for opt in TARGET_OPTIONS}


def parse_run(args: list[str]) -> RunOptions | None:
    """Options for ``ccxctl run`` from the words after ``run``; None to defer to typer."""
    values: dict[str, object] = {}
    target: dict[str, str] = {}
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        name, eq, inline = word.partition("=")
        opt = _BY_FLAG.get(name)
        if opt is None:
            return None
        if opt.type is bool:
            if eq:
                return None
            values[opt.name] = True
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(args):
            value = args[i + 1]
            i += 2
        else:
            return None
        if opt.name in _TARGET:
            target[opt.name] = value
        elif opt.many:
            values.setdefault(opt.name, []).append(value)  # type: ignore[attr-defined]
        else:
            try:
                values[opt.name] = opt.type(value)
            except ValueError:
                return None
    command = args[i:]
    if not command:
        return None
    try:
        return run_options(command, values, **target)
    except OptionError:
        return None  # typer says what is wrong
