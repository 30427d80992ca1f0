"""Where the cgroup hierarchies are and where this process sits in them (parsing, no I/O)."""

from __future__ import annotations

import dataclasses

__all__ = ["Hierarchy", "parse_mountinfo", "parse_proc_cgroup"]


@dataclasses.dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    mount: str
    version: int
    controllers: frozenset[str]
    """v1: the controllers bound to the mount; v2: empty (see cgroup.controllers)."""


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 3 < len(path) + 0 and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Hierarchy]:
    """The cgroup and cgroup2 mounts listed in ``/proc/self/mountinfo``."""
    found: list[Hierarchy] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        tail = right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, super_opts = tail[0], tail[2]
        if fstype == "cgroup2":
            found.append(Hierarchy(_unescape(fields[4]), 2, frozenset()))
        elif fstype == "cgroup":
            opts = set(super_opts.split(","))
            names = {o for o in opts if o.startswith("name=")}
            ctrls = frozenset(o for o in opts if o not in ("rw", "ro") and "=" not in o) | frozenset(names)
            found.append(Hierarchy(_unescape(fields[4]), 1, ctrls))
    return found


def parse_proc_cgroup(text: str) -> tuple[str | None, dict[str, str]]:
    """``(v2 path or None, {v1 controller: path})`` from ``/proc/PID/cgroup``."""
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, path = parts
        if hid == "0" and ctrls == "":
            v2 = path
        else:
            for c in ctrls.split(","):
                if c:
                    v1[c] = path
    return v2, v1
