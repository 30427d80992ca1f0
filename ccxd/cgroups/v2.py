"""cgroup v2: each job in its own child cgroup; kill is ``cgroup.kill``.

Layout.  When the daemon runs as a systemd unit of its own, jobs go to a
delegated scope beside the unit (``scope.py``: so that a unit whose jobs
outlive the daemon can start again).  Where no scope can be made, and the
daemon's cgroup is delegated to it (``Delegate=yes``), the daemon moves every
process of that cgroup into the leaf ``supervisor/`` (v2 forbids processes in
a cgroup that hands controllers to children), enables the controllers it needs
in the unit cgroup's ``cgroup.subtree_control`` and makes jobs its siblings::

    ccxd.service/            subtree_control: +memory +cpu +pids +io
    ├── supervisor/          ccxd, its redis-server
    ├── job-0123abcd/        memory.max, memory.swap.max=0, cpu.max, pids.max, io.weight
    └── job-…

When the daemon sits in the root cgroup (containers, this kind of hybrid host),
jobs go under ``/ccxd-<instance>/`` instead and the daemon stays where it is.
When its cgroup is writable but holds processes that are not the daemon's (root
in a login session), nothing is moved: jobs go under ``<own>/ccxd-<instance>/``,
grouped and killable but without controllers.
Limits whose controller is not available are reported as unenforced; grouping,
``cgroup.kill``, ``cpu.stat`` and pressure need no controller.
"""

from __future__ import annotations

import contextlib
import logging
import os

from ccxd.cgroups import fs
from ccxd.cgroups.base import Backend, CgroupError, JobCgroup, RawSample, job_dir_name, job_id_of
from ccxd.cgroups.procfs import proc_usage, read_psi_some
from ccxd.cgroups.scope import JobsScope, scope_location
from ccxd.proc.stat import read_stat
from ccxd.protocol import Limits

__all__ = ["V2Backend", "V2Group"]

log = logging.getLogger("ccxd.cgroups")

CONTROLLERS = ("memory", "cpu", "pids", "io")
CPU_PERIOD_US = 100_000
_NEEDS = {"memory": "memory", "cpus": "cpu", "pids": "pids", "io_weight": "io"}


class V2Group(JobCgroup):
    """One job's v2 cgroup."""

    def __init__(self, job_id: str, limits: Limits, path: str) -> None:
        super().__init__(job_id, limits)
        self.path = path
        self.dir = path

    def apply(self, limits: Limits, controllers: frozenset[str]) -> None:
        """Write the limits; those whose controller is missing go to ``unenforced``."""
        d = self.dir
        self.unenforced = [
            n for n, c in _NEEDS.items() if getattr(limits, n) is not None and c not in controllers
        ]
        if limits.memory is not None and "memory" in controllers:
            fs.write(f"{d}/memory.max", str(limits.memory))
            if os.path.exists(f"{d}/memory.swap.max"):
                fs.write(f"{d}/memory.swap.max", "0")
            # An OOM kill ends the whole job, not one random process of it.
            with contextlib.suppress(CgroupError):
                fs.write(f"{d}/memory.oom.group", "1")
        if limits.cpus is not None and "cpu" in controllers:
            fs.write(f"{d}/cpu.max", f"{max(1000, round(limits.cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")
        if limits.pids is not None and "pids" in controllers:
            fs.write(f"{d}/pids.max", str(limits.pids))
        if limits.io_weight is not None and "io" in controllers:
            if os.path.exists(f"{d}/io.weight"):
                fs.write(f"{d}/io.weight", f"default {limits.io_weight}")
            elif os.path.exists(f"{d}/io.bfq.weight"):
                fs.write(f"{d}/io.bfq.weight", f"default {min(1000, limits.io_weight)}")
            else:
                self.unenforced.append("io_weight")

    def join_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new process joins."""
        return [f"{self.dir}/cgroup.procs"]

    def attach(self, pid: int) -> None:
        """Move ``pid`` into the group."""
        fs.write(f"{self.dir}/cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        """Processes in the group now."""
        return fs.read_pids(f"{self.dir}/cgroup.procs")

    async def kill(self) -> None:
        """SIGKILL everything in the group until it is empty."""
        procs = f"{self.dir}/cgroup.procs"
        if os.path.exists(f"{self.dir}/cgroup.kill"):
            try:
                fs.write(f"{self.dir}/cgroup.kill", "1")
            except CgroupError:
                if os.path.isdir(self.dir):
                    raise
                return
            await fs.kill_until_empty(procs)  # waits for the kernel's kill to finish
        else:  # kernels before 5.14: freeze, kill each, thaw
            await fs.kill_until_empty(procs, (f"{self.dir}/cgroup.freeze", "1", "0"))

    def sample(self) -> RawSample:
        """Read the group's counters."""
        d = self.dir
        cpu = fs.read_keyed(f"{d}/cpu.stat")
        memory = peak = count = None
        if os.path.exists(f"{d}/memory.current"):
            memory = fs.read_int(f"{d}/memory.current")
            if os.path.exists(f"{d}/memory.peak"):
                peak = fs.read_int(f"{d}/memory.peak")
        if os.path.exists(f"{d}/pids.current"):
            count = fs.read_int(f"{d}/pids.current")
        rd = wr = 0
        if os.path.exists(f"{d}/io.stat"):
            for line in fs.read_text(f"{d}/io.stat").splitlines():
                for field in line.split()[1:]:
                    key, _, value = field.partition("=")
                    if key == "rbytes":
                        rd += int(value)
                    elif key == "wbytes":
                        wr += int(value)
        if memory is None or count is None:
            u = proc_usage(self.pids())
            memory = u.memory if memory is None else memory
            count = u.threads if count is None else count
            if not os.path.exists(f"{d}/io.stat"):
                rd, wr = u.io_read_bytes, u.io_write_bytes
        throttled = cpu.get("throttled_usec")
        return RawSample(
            cpu_seconds=cpu.get("usage_usec", 0) / 1e6,
            memory=memory or 0,
            pids=count or 0,
            memory_peak=peak,
            io_read_bytes=rd,
            io_write_bytes=wr,
            cpu_throttled=throttled / 1e6 if throttled is not None else None,
            psi_cpu=read_psi_some(f"{d}/cpu.pressure"),
            psi_memory=read_psi_some(f"{d}/memory.pressure"),
            psi_io=read_psi_some(f"{d}/io.pressure"),
        )

    def oom_kills(self) -> int:
        """OOM kills the kernel counted for the group."""
        try:
            events = fs.read_keyed(f"{self.dir}/memory.events")
        except CgroupError:
            return 0
        return max(events.get("oom_kill", 0), events.get("oom_group_kill", 0))

    def remove(self) -> bool:
        """Remove the group if empty."""
        try:
            os.rmdir(self.dir)
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.debug("cannot remove %s: %s", self.dir, exc)
            return False
        return True


class V2Backend(Backend):
    """Job cgroups on the unified hierarchy."""

    name = "v2"

    def __init__(self, mount: str, own: str, instance: str, move_self: bool = True) -> None:
        self.mount = mount
        self.scope: JobsScope | None = None
        own_dir = os.path.join(mount, own.lstrip("/")).rstrip("/")
        if own in ("", "/"):
            # Nothing to delegate from: a group of our own beside us, the daemon stays put.
            self.parent = os.path.join(mount, f"ccxd-{instance}")
            with contextlib.suppress(FileExistsError):
                _mkdir(self.parent)
            _enable(mount, CONTROLLERS)
        elif move_self and (scope := self._scope(mount, own, instance)) is not None:
            # A service unit: jobs go to a scope beside it (scope.py says why).  Its cgroup
            # then also holds shims of jobs an earlier daemon left; that is fine, it stays a leaf.
            self.scope = scope
            self.parent = scope.path
        else:
            if not os.access(f"{own_dir}/cgroup.subtree_control", os.W_OK) or not os.access(own_dir, os.W_OK):
                raise CgroupError(f"{own_dir} is not delegated to ccxd (set Delegate=yes on the unit)")
            if move_self and _only_ours(fs.read_pids(f"{own_dir}/cgroup.procs")):
                # Delegated to us but no scope could be made: jobs below, the daemon in a leaf.
                self.parent = own_dir
                self._move_into_leaf(own_dir)
            else:
                # Writable but shared (root in a login session): never move other people's
                # processes; group jobs below it, without controllers.
                self.parent = os.path.join(own_dir, f"ccxd-{instance}")
                with contextlib.suppress(FileExistsError):
                    _mkdir(self.parent)
        self.controllers = _enable(self.parent, CONTROLLERS)
        enforce = [n for n, c in _NEEDS.items() if c in self.controllers]
        can = ", ".join(enforce) or "none, no controllers delegated"
        self.description = f"v2 {self.parent} (limits: {can})"

    @staticmethod
    def _scope(mount: str, own: str, instance: str) -> JobsScope | None:
        where = scope_location(mount, own, instance)
        if where is None:
            return None
        unit, slice_, path = where
        try:
            return JobsScope(unit, slice_, path, user="/user@" in own)
        except (CgroupError, OSError) as exc:
            log.warning(
                "%s; job cgroups go below the daemon's unit, so while jobs outlive a daemon "
                "systemd < 254 cannot start the next one",
                exc,
            )
            return None

    def helper_pids(self) -> list[int]:
        """Children this backend started (the scope's holder), for the reaper to expect."""
        if self.scope is None or self.scope.holder_pid is None:
            return []
        return [self.scope.holder_pid]

    @staticmethod
    def _move_into_leaf(own_dir: str) -> None:
        leaf = f"{own_dir}/supervisor"
        with contextlib.suppress(FileExistsError):
            _mkdir(leaf)
        # Every process of the unit (ccxd, its redis-server) moves; until then
        # subtree_control refuses controllers (no internal processes).
        for _ in range(10):
            pids = fs.read_pids(f"{own_dir}/cgroup.procs")
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(CgroupError):
                    fs.write(f"{leaf}/cgroup.procs", str(pid))
        raise CgroupError(f"cannot move the processes of {own_dir} into {leaf}")

    def create(self, job_id: str, limits: Limits) -> JobCgroup:
        """Make the job's group with its limits."""
        path = os.path.join(self.parent, job_dir_name(job_id))
        _mkdir(path)
        group = V2Group(job_id, limits, path)
        try:
            group.apply(limits, self.controllers)
        except CgroupError:
            group.remove()
            raise
        return group

    def open(self, job_id: str, path: str | None = None) -> JobCgroup | None:
        """Reopen a job's existing group (always ``job-<id>`` here)."""
        path = os.path.join(self.parent, job_dir_name(job_id))
        return V2Group(job_id, Limits(), path) if os.path.isdir(path) else None

    def close(self) -> None:
        """Remove ``ccxd-<instance>`` if empty, end the jobs' scope if empty (a unit cgroup stays)."""
        if self.scope is not None:
            self.scope.release()
        elif os.path.basename(self.parent).startswith("ccxd-"):
            with contextlib.suppress(OSError):
                os.rmdir(self.parent)

    def leftovers(self) -> list[str]:
        """Job ids with a group under this daemon's parent."""
        try:
            names = os.listdir(self.parent)
        except OSError:
            return []
        return sorted(j for n in names if (j := job_id_of(n)) is not None)


def _only_ours(pids: list[int]) -> bool:
    """True when every pid is this process or one of its descendants."""
    me = os.getpid()
    for pid in pids:
        cur, hops = pid, 0
        while cur not in (me, 0, 1) and hops < 64:
            info = read_stat(cur)
            if info is None:
                break
            cur = info.ppid
            hops += 1
        if cur != me:
            return False
    return True


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise CgroupError(f"cannot create {path}: {exc.strerror}") from None


def _enable(d: str, wanted: tuple[str, ...]) -> frozenset[str]:
    """Enable what ``d`` offers of ``wanted`` for its children; return what children get."""
    try:
        offered = set(fs.read_text(f"{d}/cgroup.controllers").split())
    except CgroupError:
        return frozenset()
    enabled = set(fs.read_text(f"{d}/cgroup.subtree_control").split())
    for c in wanted:
        if c in offered and c not in enabled:
            try:
                fs.write(f"{d}/cgroup.subtree_control", f"+{c}")
                enabled.add(c)
            except CgroupError as exc:  # e.g. EBUSY: processes in d, or not delegated
                log.debug("%s", exc)
    return frozenset(enabled & set(wanted))
