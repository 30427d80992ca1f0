"""What the resource tests need from the host: which cgroup hierarchies work for us."""

from __future__ import annotations

import os

import pytest

from ccxd.cgroups.mounts import parse_mountinfo, parse_proc_cgroup


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def v1_mount(controller: str) -> str | None:
    """The writable v1 directory this process sits in for ``controller``, or None."""
    _, own = parse_proc_cgroup(_read("/proc/self/cgroup"))
    for h in parse_mountinfo(_read("/proc/self/mountinfo")):
        if h.version == 1 and controller in h.controllers and controller in own:
            d = os.path.join(h.mount, own[controller].lstrip("/"))
            if os.access(d, os.W_OK):
                return d
    return None


def v2_dir() -> str | None:
    """The writable cgroup2 directory this process sits in, or None."""
    own, _ = parse_proc_cgroup(_read("/proc/self/cgroup"))
    for h in parse_mountinfo(_read("/proc/self/mountinfo")):
        if h.version == 2 and own is not None:
            d = os.path.join(h.mount, own.lstrip("/"))
            if os.access(d, os.W_OK) and os.path.exists(os.path.join(d, "cgroup.procs")):
                return d
    return None


def need_v1() -> None:
    """Skip unless the v1 memory, cpu, cpuacct, pids and freezer hierarchies work for us.

    Not a tool CI can install: a pure-v2 host has no v1 hierarchies at all.
    """
    missing = [c for c in ("memory", "cpu", "cpuacct", "pids", "freezer") if v1_mount(c) is None]
    if missing:
        pytest.skip(f"no writable cgroup v1 hierarchy for {', '.join(missing)} on this host")


def need_v2() -> None:
    """Skip unless a cgroup2 hierarchy with cgroup.kill is writable for us."""
    d = v2_dir()
    if d is None:
        pytest.skip("no writable cgroup2 hierarchy on this host")
    probe = os.path.join(d, f"ccxd-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup2 group here: {exc}")
    try:
        if not os.path.exists(os.path.join(probe, "cgroup.kill")):
            pytest.skip("kernel without cgroup.kill (< 5.14)")
    finally:
        os.rmdir(probe)
