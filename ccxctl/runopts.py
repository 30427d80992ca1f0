"""The options of ``ccxctl run``, declared once: the typer command and the fast path read this table.

Neither typer nor msgspec here: the fast path imports this module to parse ``run`` without them.
"""

from __future__ import annotations

import os

from ccxctl.runjob import RunOptions, env_from, parse_priority
from ccxd.wire import LABEL_PATTERN, MAX_LABELS, NODE_NAME_PATTERN

TYPE_CHECKING = False  # typing's own, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FLEET_OPTIONS",
    "RUN_OPTIONS",
    "TARGET_OPTIONS",
    "Opt",
    "OptionError",
    "check_node",
    "parse_where",
    "run_options",
]


class Opt:
    """One command-line option: its parameter name, spellings, value type and help."""

    __slots__ = ("default", "envvar", "flags", "help", "many", "name", "type")

    def __init__(
        self,
        name: str,
        flags: tuple[str, ...],
        type: type,  # bool for a flag; str, float or int for a value
        help: str,
        many: bool = False,  # repeatable, a list
        default: str | None = None,
        envvar: str | None = None,
    ) -> None:
        """The option ``name`` spelled ``flags``."""
        self.name = name
        self.flags = flags
        self.type = type
        self.help = help
        self.many = many
        self.default = default
        self.envvar = envvar


RUN_OPTIONS: tuple[Opt, ...] = (
    Opt("detach", ("--detach", "-d"), bool, "Print the job id and return."),
    Opt("timeout", ("--timeout",), float, "Wall-clock limit in seconds (0: none)."),
    Opt("idle_timeout", ("--idle-timeout",), float, "Stop after this many seconds without output."),
    Opt("cwd", ("--cwd",), str, "Working directory (default: the current one)."),
    Opt(
        "env", ("--env", "-e"), str, "KEY=VALUE, or NAME for ccxctl's $NAME (unseen by ps); repeatable.", True
    ),
    Opt(
        "env_file",
        ("--env-file",),
        str,
        "A file of KEY=VALUE lines (# comments); repeatable, --env wins.",
        True,
    ),
    Opt("shell", ("--shell",), str, "zsh, bash, sh, or a path."),
    Opt("session", ("--session",), str, "Group the job under this session name."),
    Opt("tag", ("--tag",), str, "A tag, repeatable.", True),
    Opt("argv", ("--argv",), bool, "Run the words as an argument list, without a shell."),
    Opt("memory", ("--memory",), str, "Memory limit, e.g. 512M or 2G (no swap); past it: reason oom."),
    Opt("cpus", ("--cpus",), float, "CPU quota in CPUs, e.g. 1.5."),
    Opt("pids", ("--pids",), int, "Most processes/threads at once."),
    Opt("group", ("--group",), str, "Queue group: at most its parallel limit run at once (ccxctl group)."),
    Opt(
        "priority",
        ("--priority",),
        str,
        "high, normal, low or a number: queued jobs start by priority, then age.",
        default="normal",
    ),
    Opt(
        "after",
        ("--after",),
        str,
        "Start once this job succeeded (else end dependency_failed); repeatable.",
        True,
    ),
    Opt("after_any", ("--after-any",), str, "Start once this job ended, however; repeatable.", True),
    Opt(
        "worktree",
        ("--worktree",),
        bool,
        "Run in a fresh git worktree of the cwd's repository (branch ccxd/ID).",
    ),
    Opt(
        "where",
        ("--where",),
        str,
        "KEY=VALUE: run only on a fleet node with this label; repeatable (all must match).",
        True,
    ),
    Opt("node", ("--node",), str, "Run on this fleet node only."),
    Opt(
        "retry_on_node_loss",
        ("--retry-on-node-loss",),
        bool,
        "If its node is lost, start the job again on another node.",
    ),
    Opt("json_out", ("--json",), bool, "Print machine-readable JSON."),
)
"""``run``'s options in the order its help lists them (``claude`` shares group … json_out)."""

FLEET_OPTIONS: tuple[str, ...] = ("where", "node", "retry_on_node_loss")
"""Where a job may run in a fleet: ``run`` and ``claude`` take these."""

TARGET_OPTIONS: tuple[Opt, ...] = (
    Opt("socket", ("--socket",), str, "Daemon Unix socket path.", envvar="CCXD_SOCKET"),
    Opt(
        "url",
        ("--url",),
        str,
        "Remote daemon: ws://HOST[:PORT][/ws], wss://…, or unix:PATH.",
        envvar="CCXD_URL",
    ),
    Opt("token_file", ("--token-file",), str, "File holding the WebSocket token.", envvar="CCXD_TOKEN_FILE"),
)
"""Where the daemon is: ccxctl's global options (the fast path also takes them after ``run``)."""


class OptionError(ValueError):
    """An option value that cannot be used; ``hint`` names the option when one is to blame."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def run_options(
    command: list[str],
    values: dict[str, object],
    socket: str | None = None,
    url: str | None = None,
    token_file: str | None = None,
) -> RunOptions:
    """:class:`RunOptions` from ``values`` keyed by :data:`RUN_OPTIONS` names (missing: their default).

    Raises :class:`OptionError` for a priority or an environment entry that cannot be used.
    """
    given: dict[str, Any] = {
        opt.name: values.get(opt.name, [] if opt.many else opt.default) for opt in RUN_OPTIONS
    }
    try:
        environment = env_from(given.pop("env") or [], given.pop("env_file") or [], os.environ)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    try:
        priority = parse_priority(str(given.pop("priority") or "normal"))
    except ValueError as exc:
        raise OptionError(str(exc), "--priority") from None
    where = parse_where(given.pop("where") or [])
    node = check_node(given.pop("node"))
    fields: dict[str, Any] = {
        name: bool(given.pop(name)) for name in ("detach", "argv", "worktree", "retry_on_node_loss")
    }
    fields.update({name: given.pop(name) or [] for name in ("after", "after_any")})
    fields.update(tags=given.pop("tag") or [], json=bool(given.pop("json_out")), **given)
    return RunOptions(
        command=command,
        env=environment,
        priority=priority,
        where=where,
        node=node,
        socket=socket,
        url=url,
        token_file=token_file,
        **fields,
    )


_LABEL_WORDS = "1 to 63 letters, digits, '_', '.' or '-'"


def parse_where(items: list[str]) -> dict[str, str]:
    """``--where KEY=VALUE`` items as the labels a job needs (no I/O); OptionError naming the bad one."""
    where: dict[str, str] = {}
    if not items:
        return where
    import re  # here, not at the top: most runs name no label, and nothing else on their path imports re

    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise OptionError(f"{item!r}: expected KEY=VALUE, a label the node must have", "--where")
        for what, text in (("key", key), ("value", value)):
            if not re.match(LABEL_PATTERN, text):
                raise OptionError(f"{item!r}: the {what} {text!r} is no label ({_LABEL_WORDS})", "--where")
        if where.get(key, value) != value:
            raise OptionError(f"{key} is given twice, as {where[key]!r} and {value!r}", "--where")
        where[key] = value
    if len(where) > MAX_LABELS:
        raise OptionError(f"{len(where)} labels; at most {MAX_LABELS}", "--where")
    return where


def check_node(name: object) -> str | None:
    """``--node NAME`` when it is a node name (no I/O); OptionError otherwise."""
    if name is None:
        return None
    import re

    text = str(name)
    if not re.match(NODE_NAME_PATTERN, text):
        raise OptionError(
            f"{text!r} is no node name (a letter or digit, then up to 63 letters, digits, '_', '.' or '-')",
            "--node",
        )
    return text
