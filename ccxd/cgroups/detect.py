"""Choosing the backend at start: ``cgroup_backend = auto | v2 | v1 | none``."""

from __future__ import annotations

import hashlib
import logging

from ccxd.cgroups.base import Backend, CgroupError
from ccxd.cgroups.mounts import parse_mountinfo, parse_proc_cgroup
from ccxd.cgroups.none import NoneBackend

__all__ = ["instance_name", "make_backend"]

log = logging.getLogger("ccxd.cgroups")


def instance_name(key: str) -> str:
    """A short stable name for this daemon's job groups (from its socket path)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def make_backend(choice: str, instance: str) -> Backend:
    """The backend ``choice`` asks for; ``auto`` tries v2, then v1, then none.

    An explicit ``v2`` or ``v1`` that cannot work raises :class:`CgroupError`
    (the operator asked for it); ``auto`` says in the description why it fell back.
    """
    from ccxd.cgroups.v1 import V1Backend
    from ccxd.cgroups.v2 import V2Backend

    if choice == "none":
        return NoneBackend("cgroup_backend = none")
    hierarchies = parse_mountinfo(_read("/proc/self/mountinfo"))
    own_v2, own_v1 = parse_proc_cgroup(_read("/proc/self/cgroup"))
    v2_mount = next((h.mount for h in hierarchies if h.version == 2), None)
    has_v1 = any(h.version == 1 and "memory" in h.controllers for h in hierarchies)
    reasons: list[str] = []

    def try_v2() -> Backend | None:
        if v2_mount is None or own_v2 is None:
            reasons.append("no cgroup2 mount")
            return None
        try:
            backend = V2Backend(v2_mount, own_v2, instance)
        except CgroupError as exc:
            reasons.append(f"v2: {exc}")
            return None
        return backend

    def try_v1() -> Backend | None:
        if not has_v1:
            reasons.append("no v1 memory hierarchy")
            return None
        try:
            return V1Backend(hierarchies, own_v1, instance)
        except CgroupError as exc:
            reasons.append(f"v1: {exc}")
            return None

    if choice == "v2":
        backend = try_v2()
        if backend is None:
            raise CgroupError("cgroup_backend = v2 is not usable: " + "; ".join(reasons))
        return backend
    if choice == "v1":
        backend = try_v1()
        if backend is None:
            raise CgroupError("cgroup_backend = v1 is not usable: " + "; ".join(reasons))
        return backend
    # auto: v2 when it can enforce memory limits (a pure or delegated v2 system);
    # on hybrid hosts the v1 hierarchies hold the controllers, so v1 wins.
    v2 = try_v2()
    if v2 is not None and "memory" in getattr(v2, "controllers", frozenset()):
        return v2
    v1 = try_v1()
    if v1 is not None:
        if v2 is not None:
            v2.close()
        return v1
    if v2 is not None:
        return v2
    return NoneBackend("; ".join(reasons))
