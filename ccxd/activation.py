"""Socket activation: the listening sockets systemd passes in ``LISTEN_FDS``.

systemd (``ccxd.socket``, ``ccxd-websocket.socket``) binds the sockets, starts ccxd on
the first connection and hands them over as file descriptors 3, 4, … with
``LISTEN_PID`` (must be our pid, else they were meant for another process),
``LISTEN_FDS`` (how many) and ``LISTEN_FDNAMES`` (``FileDescriptorName=`` of each,
colon-separated).  The protocol is sd_listen_fds(3).

:func:`parse` and :func:`assign` are the sans-I/O core; :func:`take` is the thin
layer that wraps the descriptors in sockets and removes the variables from
``os.environ`` so jobs, which copy the daemon's environment, never see them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["LISTEN_FDS_START", "ActivatedSockets", "Assignment", "Passed", "assign", "parse", "take"]

log = logging.getLogger("ccxd.activation")

LISTEN_FDS_START = 3
"""The first passed descriptor (SD_LISTEN_FDS_START)."""

UNIX_NAME = "unix"
WEBSOCKET_NAME = "websocket"
_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class Passed:
    """One descriptor systemd passed, with its ``FileDescriptorName=``."""

    fd: int
    name: str


def parse(environ: Mapping[str, str], pid: int) -> tuple[list[Passed], str | None]:
    """The descriptors passed to process ``pid``, and a warning when the variables are malformed.

    Absent variables, or a ``LISTEN_PID`` of another process, mean nothing was
    passed (no warning: that is the normal case without systemd).  Names are
    ``"unknown"`` when ``LISTEN_FDNAMES`` is missing or its count does not match,
    as sd_listen_fds_with_names(3) does.
    """
    raw_pid = environ.get("LISTEN_PID")
    raw_fds = environ.get("LISTEN_FDS")
    if raw_pid is None or raw_fds is None:
        return [], None
    try:
        listen_pid = int(raw_pid)
        count = int(raw_fds)
    except ValueError:
        return [], f"ignoring malformed LISTEN_PID={raw_pid!r} LISTEN_FDS={raw_fds!r}"
    if listen_pid != pid:
        return [], None
    if count <= 0:
        return [], None if count == 0 else f"ignoring LISTEN_FDS={raw_fds!r}"
    names = environ.get("LISTEN_FDNAMES", "").split(":") if "LISTEN_FDNAMES" in environ else []
    warning = None
    if len(names) != count:
        if names:
            warning = f"LISTEN_FDNAMES has {len(names)} names for {count} descriptors; ignoring the names"
        names = ["unknown"] * count
    return [Passed(LISTEN_FDS_START + i, name) for i, name in enumerate(names)], warning


@dataclass
class Assignment:
    """Which passed descriptor serves which front-end, and which are of no use."""

    unix: int | None = None
    websocket: int | None = None
    unused: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def assign(passed: Sequence[Passed], families: Mapping[int, int]) -> Assignment:
    """Match descriptors to front-ends by name, else by address family.

    ``families`` maps each fd to its socket family (``AF_UNIX``, ``AF_INET``,
    ``AF_INET6``; absent or -1 when the fd is not a listening stream socket).  A
    descriptor named ``unix`` or ``websocket`` must have a matching family;
    unnamed (``unknown``) ones are taken by family, the first of each kind wins.
    """
    out = Assignment()
    inet = (socket.AF_INET, socket.AF_INET6)
    wanted = {UNIX_NAME: "unix", WEBSOCKET_NAME: "websocket"}
    # Named ones first, so an unnamed descriptor never takes a named one's place.
    for p in sorted(passed, key=lambda p: p.name not in wanted):
        family = families.get(p.fd, -1)
        by_family = "unix" if family == socket.AF_UNIX else "websocket" if family in inet else None
        if family == -1:
            problem = "is not a listening stream socket"
        elif p.name not in (*wanted, "unknown"):
            problem = "has a name ccxd does not serve (expected unix or websocket)"
        elif by_family is None or (p.name in wanted and wanted[p.name] != by_family):
            problem = "has the wrong address family for its name"
        elif getattr(out, by_family) is not None:
            problem = f"is a second {by_family} socket"
        else:
            setattr(out, by_family, p.fd)
            continue
        out.warnings.append(f"fd {p.fd} ({p.name}) {problem}; ignored")
        out.unused.append(p.fd)
    return out


@dataclass
class ActivatedSockets:
    """The listening sockets systemd passed (both None without socket activation)."""

    unix: socket.socket | None = None
    websocket: socket.socket | None = None

    @property
    def any(self) -> bool:
        """Whether systemd passed at least one socket ccxd serves."""
        return self.unix is not None or self.websocket is not None


def _family(fd: int) -> int:
    try:
        with socket.socket(fileno=os.dup(fd)) as probe:
            listening = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            if probe.type != socket.SOCK_STREAM or not listening:
                return -1
            return int(probe.family)
    except OSError:
        return -1


def take(environ: dict[str, str] | None = None, pid: int | None = None) -> ActivatedSockets:
    """Wrap the passed listening sockets; remove the ``LISTEN_*`` variables from the environment.

    Descriptors that serve nothing are closed, so a misconfigured socket unit
    does not keep connections hanging; each is named in a warning.
    """
    env = os.environ if environ is None else environ
    passed, warning = parse(env, os.getpid() if pid is None else pid)
    for name in _ENV:
        env.pop(name, None)
    if warning:
        log.warning("socket activation: %s", warning)
    if not passed:
        return ActivatedSockets()
    result = assign(passed, {p.fd: _family(p.fd) for p in passed})
    for text in result.warnings:
        log.warning("socket activation: %s", text)
    for fd in result.unused:
        os.close(fd)
    out = ActivatedSockets()
    for slot in ("unix", "websocket"):
        fd = getattr(result, slot)
        if fd is not None:
            os.set_inheritable(fd, False)  # jobs must not hold the listening socket open
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            setattr(out, slot, sock)
            log.info("socket activation: %s socket from systemd (fd %d, %s)", slot, fd, sock.getsockname())
    return out
