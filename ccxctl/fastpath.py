"""Parse ``ccxctl run …`` without importing typer, for a fast start.

Only the common, unambiguous forms are handled here; anything else (help,
unknown options, malformed values) returns None and the full typer CLI takes
over, so both paths end in the same :func:`ccxctl.runjob.run_job`.
"""

from __future__ import annotations

import os

from ccxctl.runjob import RunOptions, env_from, parse_priority

__all__ = ["parse_run"]

_FLAGS = {"--detach": "detach", "-d": "detach", "--json": "json", "--argv": "argv", "--worktree": "worktree"}
_VALUES = {
    "--timeout": "timeout",
    "--idle-timeout": "idle_timeout",
    "--cwd": "cwd",
    "--shell": "shell",
    "--session": "session",
    "--socket": "socket",
    "--url": "url",
    "--token-file": "token_file",
    "--memory": "memory",
    "--cpus": "cpus",
    "--pids": "pids",
    "--group": "group",
    "--priority": "priority",
}
_FLOATS = {"timeout", "idle_timeout", "cpus"}
_INTS = {"pids"}


def parse_run(args: list[str]) -> RunOptions | None:
    """Options for ``ccxctl run`` from the words after ``run``; None to defer to typer."""
    values: dict[str, object] = {}
    env: list[str] = []
    env_files: list[str] = []
    tags: list[str] = []
    after: dict[str, list[str]] = {"after": [], "after_any": []}
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        name, eq, inline = word.partition("=")
        if name in _FLAGS and not eq:
            values[_FLAGS[name]] = True
            i += 1
            continue
        if name in _VALUES or name in ("--env", "-e", "--env-file", "--tag", "--after", "--after-any"):
            if eq:
                value = inline
                i += 1
            elif i + 1 < len(args):
                value = args[i + 1]
                i += 2
            else:
                return None
            if name in ("--env", "-e"):
                env.append(value)
            elif name == "--env-file":
                env_files.append(value)
            elif name == "--tag":
                tags.append(value)
            elif name in ("--after", "--after-any"):
                after[name[2:].replace("-", "_")].append(value)
            elif name == "--priority":
                try:
                    values["priority"] = parse_priority(value)
                except ValueError:
                    return None
            else:
                field = _VALUES[name]
                if field in _FLOATS or field in _INTS:
                    try:
                        values[field] = float(value) if field in _FLOATS else int(value)
                    except ValueError:
                        return None
                else:
                    values[field] = value
            continue
        return None
    command = args[i:]
    if not command:
        return None
    try:
        environment = env_from(env, env_files, os.environ)
    except ValueError:
        return None  # typer says what is wrong
    return RunOptions(command=command, env=environment, tags=tags, **after, **values)  # type: ignore[arg-type]
