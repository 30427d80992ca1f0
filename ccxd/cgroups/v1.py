"""cgroup v1: a job's group is a child per hierarchy (memory, cpuacct, pids, freezer, blkio; cpu: quota).

Each child sits under ``<own cgroup>/ccxd-<instance>/`` of that hierarchy, where
``<own cgroup>`` is what ``/proc/self/cgroup`` gives the daemon.  Memory is a
hard limit with swap forbidden (memsw = limit); a kill freezes the group, sends
SIGKILL to every task, and thaws it so nothing forks in between.

Groups of jobs without limits are pooled: making and removing five or six
cgroups per job (and the kernel's deferred teardown of each memory cgroup) cost
about half a millisecond of CPU for every job, and renaming them for each job
still cost a quarter of that.  Such a job runs in ``pool-<n>``; once empty, the
group's CPU, peak-memory and I/O counters are reset and the next job without
limits runs in it, under the same name.  The job's record names its group (the
``cgroup`` of its JobInfo), which is how a restarted daemon finds the group of a
job it adopts.  A group still holding more than :data:`RECYCLE_MAX_MEMORY` of
charged memory is removed; a job with limits gets ``job-<id>``, made for it and
removed after it.  (cgroup v2 always makes and removes ``job-<id>``.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from collections.abc import Collection

from ccxd.cgroups import fs
from ccxd.cgroups.base import Backend, CgroupError, JobCgroup, RawSample, job_dir_name, job_id_of
from ccxd.cgroups.mounts import Hierarchy
from ccxd.protocol import Limits

__all__ = ["V1Backend", "V1Group"]

log = logging.getLogger("ccxd.cgroups")

# Controllers a job group lives in, in the order they are joined (cpu only with a quota).
WANTED = ("memory", "cpu", "cpuacct", "pids", "freezer", "blkio")
CPU_PERIOD_US = 100_000
POOL_PREFIX = "pool-"
RECYCLE_MAX_MEMORY = 1024 * 1024
"""A group still charged more than this (page cache a job left) is removed, not recycled."""
POOL_MAX = 256
"""Most free groups kept for reuse."""
HANDLE_GROUPS_MAX = 64
"""Pool groups whose counter files stay open while jobs run (at most one per 128 of the fd limit)."""


_NO_LIMITS = Limits()


def blkio_weight(io_weight: int) -> int:
    """v2's io.weight (1..10000, default 100) as v1's blkio weight (10..1000, default 500)."""
    return max(10, min(1000, io_weight * 500 // 100))


class V1Group(JobCgroup):
    """A job's children in each v1 hierarchy."""

    path: str

    def __init__(
        self, job_id: str, limits: Limits, dirs: dict[str, str], pool: V1Backend | None = None
    ) -> None:
        super().__init__(job_id, limits)
        self.dirs = dirs
        self.path = dirs.get("memory") or next(iter(dirs.values()))
        self._pool = pool
        self._oom_base = 0  # OOM kills counted before this job had the group (it is recycled)
        # What the last sample and the final OOM count read, so recycling need not read them again.
        self._seen_pids: int | None = None
        self._seen_memory: int | None = None
        self._final_oom: int | None = None
        self._final_sample = False  # the _seen values are the ended job's final sample
        self._froze = False
        # Set once the group went back to the pool: another job may run in these
        # directories now, so this (finished) job's object must not see or signal them.
        self._released = False
        self.handles: fs.Handles | None = None
        """The group's open counter files, for a pool group (see :class:`~ccxd.cgroups.fs.Handles`)."""
        self._counted = False  # a pool group handed out by its backend and not yet back

    def apply(self, limits: Limits) -> None:
        """Write the limits; what a hierarchy lacks is listed in ``unenforced``."""
        missing: list[str] = []
        if limits.memory is not None:
            mem = self.dirs.get("memory")
            if mem is None:
                missing.append("memory")
            else:
                fs.write(f"{mem}/memory.limit_in_bytes", str(limits.memory))
                if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
                    fs.write(f"{mem}/memory.memsw.limit_in_bytes", str(limits.memory))
                else:  # no swap accounting: at least make the kernel avoid swapping
                    with contextlib.suppress(CgroupError):
                        fs.write(f"{mem}/memory.swappiness", "0")
        if limits.cpus is not None:
            cpu = self.dirs.get("cpu")
            if cpu is None:
                missing.append("cpus")
            else:
                fs.write(f"{cpu}/cpu.cfs_period_us", str(CPU_PERIOD_US))
                fs.write(f"{cpu}/cpu.cfs_quota_us", str(max(1000, round(limits.cpus * CPU_PERIOD_US))))
        if limits.pids is not None:
            if "pids" not in self.dirs:
                missing.append("pids")
            else:
                fs.write(f"{self.dirs['pids']}/pids.max", str(limits.pids))
        if limits.io_weight is not None:
            blk = self.dirs.get("blkio")
            target = None
            if blk is not None:
                for name in ("blkio.bfq.weight", "blkio.weight"):
                    if os.path.exists(f"{blk}/{name}"):
                        target = f"{blk}/{name}"
                        break
            if target is None:
                missing.append("io_weight")
            else:
                fs.write(target, str(blkio_weight(limits.io_weight)))
        self.unenforced = missing

    def join_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new process joins."""
        return [f"{d}/cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def attach(self, pid: int) -> None:
        """Move ``pid`` into the group."""
        for f in self.join_files():
            fs.write(f, str(pid))

    def _procs_file(self) -> str:
        # freezer (or any) lists the same processes; the memory dir is the job's identity.
        d = self.dirs.get("freezer") or self.dirs.get("pids") or next(iter(self.dirs.values()))
        return f"{d}/cgroup.procs"

    def pids(self) -> list[int]:
        """Processes in the group now (none once it went back to the pool)."""
        if self._released:
            return []
        return fs.read_pids(self._procs_file())

    async def kill(self) -> None:
        """SIGKILL everything in the group until it is empty (nothing once it went back to the pool)."""
        if self._released:
            return
        freezer = self.dirs.get("freezer")
        freeze = (f"{freezer}/freezer.state", "FROZEN", "THAWED") if freezer is not None else None
        self._froze = self._froze or freeze is not None
        await fs.kill_until_empty(self._procs_file(), freeze)

    def sample(self) -> RawSample:
        """Read the group's counters."""
        from ccxd.cgroups.procfs import proc_usage

        # Only the final sample (and the reset after it) keeps files open: a running
        # job's periodic samples are seconds apart and would hold them for its lifetime.
        h = self.handles if self.ended else None
        cpu_seconds: float | None = None
        # Without a quota nothing is throttled (and a job without one has no cpu group).
        throttled: float | None = 0.0 if self.limits.cpus is None else None
        if "cpuacct" in self.dirs:
            cpu_seconds = (fs.read_int(f"{self.dirs['cpuacct']}/cpuacct.usage", h) or 0) / 1e9
        if "cpu" in self.dirs:
            stat = fs.read_keyed(f"{self.dirs['cpu']}/cpu.stat")
            if "throttled_time" in stat:
                throttled = stat["throttled_time"] / 1e9
        memory: int | None = None
        peak: int | None = None
        if "memory" in self.dirs:
            mem = self.dirs["memory"]
            memory = fs.read_int(f"{mem}/memory.usage_in_bytes", h) or 0
            peak = fs.read_int(f"{mem}/memory.max_usage_in_bytes", h)
        count = None
        if "pids" in self.dirs:
            count = fs.read_int(f"{self.dirs['pids']}/pids.current", h)
        rd = wr = 0
        if "blkio" in self.dirs:
            rd, wr = _blkio_bytes(self.dirs["blkio"], h)
        self._seen_pids, self._seen_memory = count, memory
        self._final_sample = self.ended
        if cpu_seconds is None or memory is None or count is None:
            u = proc_usage(self.pids())
            cpu_seconds = u.cpu_seconds if cpu_seconds is None else cpu_seconds
            memory = u.memory if memory is None else memory
            count = u.threads if count is None else count
        return RawSample(
            cpu_seconds=cpu_seconds,
            memory=memory,
            pids=count or 0,
            memory_peak=peak,
            io_read_bytes=rd,
            io_write_bytes=wr,
            cpu_throttled=throttled,
        )

    def oom_kills(self) -> int:
        """OOM kills the kernel counted for the group."""
        mem = self.dirs.get("memory")
        if mem is None:
            return 0
        try:
            total = fs.read_keyed(f"{mem}/memory.oom_control", self.handles if self.ended else None).get(
                "oom_kill", 0
            )
        except CgroupError:
            return 0
        if self.ended:
            self._final_oom = total
        return total - self._oom_base

    def remove(self) -> bool:
        """Remove the group if empty (or put it back in its backend's pool of free groups)."""
        if self._pool is not None and self._pool.recycle(self):
            return True
        if self._pool is not None:
            self._pool.returned(self, kept=False)
        clean = True
        for d in dict.fromkeys(self.dirs.values()):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.debug("cannot remove %s: %s", d, exc)
                clean = False
        return clean


def _pool_number(name: str) -> int:
    tail = name[len(POOL_PREFIX) :]
    return int(tail) if tail.isdigit() else 0


def _is_pool(path: str) -> bool:
    name = os.path.basename(path)
    return name.startswith(POOL_PREFIX) and name[len(POOL_PREFIX) :].isdigit()


def _blkio_bytes(d: str, handles: fs.Handles | None = None) -> tuple[int, int]:
    rd = wr = 0
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.io_service_bytes_recursive"):
        try:
            text = fs.read_text(f"{d}/{name}", handles)
        except CgroupError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in ("Read", "Write"):
                if parts[1] == "Read":
                    rd += int(parts[2])
                else:
                    wr += int(parts[2])
        return rd, wr
    return rd, wr


class V1Backend(Backend):
    """Per-job children in each v1 hierarchy under the daemon's own cgroups."""

    name = "v1"

    def __init__(self, hierarchies: list[Hierarchy], own: dict[str, str], instance: str) -> None:
        self.parents: dict[str, str] = {}
        for ctrl in WANTED:
            h = next((h for h in hierarchies if h.version == 1 and ctrl in h.controllers), None)
            if h is None or ctrl not in own:
                continue
            self.parents[ctrl] = os.path.join(h.mount, own[ctrl].lstrip("/"), f"ccxd-{instance}")
        if "memory" not in self.parents and "cpuacct" not in self.parents:
            raise CgroupError("no v1 memory or cpuacct hierarchy mounted")
        made = []
        try:
            for parent in dict.fromkeys(self.parents.values()):  # co-mounted controllers share a dir
                os.makedirs(parent, exist_ok=True)
                made.append(parent)
        except OSError as exc:
            raise CgroupError(f"cannot create {exc.filename}: {exc.strerror}") from None
        mem = self.parents.get("memory")
        if mem is not None:
            # Charges of a job must count in its own group and its parent's (v1 default varies).
            with contextlib.suppress(CgroupError):
                if fs.read_int(f"{mem}/memory.use_hierarchy") == 0:
                    fs.write(f"{mem}/memory.use_hierarchy", "1")
        enforce = [
            n for n, c in (("memory", "memory"), ("cpus", "cpu"), ("pids", "pids")) if c in self.parents
        ]
        blk = self.parents.get("blkio")
        if blk is not None and any(
            os.path.exists(f"{blk}/{w}") for w in ("blkio.weight", "blkio.bfq.weight")
        ):
            enforce.append("io_weight")
        where = self.parents.get("memory") or next(iter(self.parents.values()))
        self.description = f"v1 {where} (limits: {', '.join(enforce) or 'none'})"
        self._free: list[V1Group] = []
        self._handles: dict[str, fs.Handles] = {}  # by pool group path
        self._handle_groups = min(HANDLE_GROUPS_MAX, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 128)
        self._out = 0  # pool groups handed out and not back yet
        # Pool groups an earlier run left may belong to jobs this daemon adopts; new ones
        # are numbered past them, and :meth:`strays` removes those nobody adopted.
        self._serial = max((_pool_number(n) for n in self._names(POOL_PREFIX)), default=0)

    def _names(self, prefix: str) -> set[str]:
        """Names of the groups starting with ``prefix`` in any hierarchy."""
        names: set[str] = set()
        for parent in dict.fromkeys(self.parents.values()):
            with contextlib.suppress(OSError):
                names.update(n for n in os.listdir(parent) if n.startswith(prefix))
        return names

    def _dirs(self, name: str) -> dict[str, str]:
        return {c: os.path.join(p, name) for c, p in self.parents.items()}

    def _existing(self, name: str) -> dict[str, str]:
        """The hierarchies that have a group ``name``."""
        return {c: d for c, d in self._dirs(name).items() if os.path.isdir(d)}

    def create(self, job_id: str, limits: Limits) -> JobCgroup:
        """The job's group with its limits: a pool group when it has none, else ``job-<id>``."""
        if limits == _NO_LIMITS:
            while self._free:
                free = self._free.pop()
                if not os.path.isdir(free.path):  # removed behind our back: make a new one
                    free._pool = None
                    free.remove()
                    self._drop_handles(free.path)
                    continue
                group = V1Group(job_id, _NO_LIMITS, free.dirs, self)
                group._oom_base = free._oom_base
                return self._hand_out(group)
            self._serial += 1
            dirs = self._dirs(f"{POOL_PREFIX}{self._serial}")
        else:
            dirs = self._dirs(job_dir_name(job_id))
        if limits.cpus is None and dirs.get("cpu") not in (None, dirs.get("cpuacct")):
            # The cpu controller only enforces a quota; cpuacct counts.  Each hierarchy
            # a job joins is one more cgroup migration when it starts.
            del dirs["cpu"]
        made: list[str] = []
        try:
            for d in dict.fromkeys(dirs.values()):
                os.mkdir(d)
                made.append(d)
        except OSError as exc:
            for d in made:
                with contextlib.suppress(OSError):
                    os.rmdir(d)
            raise CgroupError(f"cannot create {exc.filename}: {exc.strerror}") from None
        group = V1Group(job_id, limits, dirs, self)
        try:
            group.apply(limits)
        except CgroupError:
            group.remove()
            raise
        return self._hand_out(group) if limits == _NO_LIMITS else group

    def _hand_out(self, group: V1Group) -> V1Group:
        handles = self._handles.get(group.path)
        if handles is None and len(self._handles) < self._handle_groups:
            handles = self._handles[group.path] = fs.Handles()
        group.handles = handles
        group._counted = True
        self._out += 1
        return group

    def returned(self, group: V1Group, kept: bool) -> None:
        """A pool group came back (``kept``: into the pool; else it is being removed)."""
        if not group._counted:
            return
        group._counted = False
        self._out -= 1
        if not kept:
            # A removal that is retried (processes still in the group) must not reopen
            # files into handles nobody would close.
            group.handles = None
            self._drop_handles(group.path)

    def close_idle(self) -> None:
        """Close every counter file once no pool group is out: an idle daemon holds none.

        Not at the moment the last job ends: jobs come in waves (a client starts
        the next ones when it hears the last ended), and the files would be
        reopened at every gap between two waves (docs/decisions/9-cgroup-counter-files.md).
        """
        if self._out == 0:
            for handles in self._handles.values():
                handles.close()

    def _drop_handles(self, path: str) -> None:
        handles = self._handles.pop(path, None)
        if handles is not None:
            handles.close()

    def recycle(self, group: V1Group) -> bool:
        """Reset an empty pool group's counters and keep it for the next job; False: remove it instead."""
        if group.limits != _NO_LIMITS or len(self._free) >= POOL_MAX or not _is_pool(group.path):
            return False
        dirs = group.dirs
        h = group.handles
        # The verdict took the job's final sample (and usually its OOM count): once the
        # job ended nothing of it can enter the group again, so what it read still holds.
        final = group._final_sample
        try:
            if "pids" in dirs:
                if not (final and group._seen_pids == 0) and fs.read_int(f"{dirs['pids']}/pids.current", h):
                    return False
            elif group.pids():
                return False
            if group._froze and fs.read_text(f"{dirs['freezer']}/freezer.state").strip() != "THAWED":
                return False
            mem = dirs.get("memory")
            oom_base = group._oom_base
            if mem is not None:
                memory = group._seen_memory if final else None
                if memory is None:
                    memory = fs.read_int(f"{mem}/memory.usage_in_bytes", h) or 0
                if memory > RECYCLE_MAX_MEMORY:
                    return False
                fs.write(f"{mem}/memory.max_usage_in_bytes", "0", h)
                total = group._final_oom  # the verdict's count, when it read one
                if total is None:
                    total = fs.read_keyed(f"{mem}/memory.oom_control", h).get("oom_kill", 0)
                oom_base = total
            if "cpuacct" in dirs:
                fs.write(f"{dirs['cpuacct']}/cpuacct.usage", "0", h)
            if "blkio" in dirs:
                fs.write(f"{dirs['blkio']}/blkio.reset_stats", "1", h)
        except CgroupError as exc:
            log.debug("cgroup %s is removed, not recycled: %s", group.path, exc)
            return False
        group._released = True  # a stop still under way for the finished job must not reach the next
        free = V1Group("", _NO_LIMITS, dirs, self)
        free._oom_base = oom_base
        self._free.append(free)
        self.returned(group, kept=True)
        return True

    def open(self, job_id: str, path: str | None = None) -> JobCgroup | None:
        """Reopen a job's existing group (``path``: the one its record names)."""
        name = os.path.basename(path) if path else ""
        if not (_is_pool(name) or name == job_dir_name(job_id)):
            name = job_dir_name(job_id)
        dirs = self._existing(name)
        return V1Group(job_id, Limits(), dirs) if dirs else None

    def strays(self, in_use: Collection[str]) -> list[JobCgroup]:
        """Pool groups an earlier run left that no job here uses (``in_use``: their paths)."""
        known = {os.path.basename(p) for p in in_use}
        known.update(os.path.basename(g.path) for g in self._free)
        groups: list[JobCgroup] = []
        for name in sorted(self._names(POOL_PREFIX) - known, key=_pool_number):
            dirs = self._existing(name)
            if dirs:
                groups.append(V1Group("", Limits(), dirs))
        return groups

    def close(self) -> None:
        """Remove the free groups, then the ``ccxd-<instance>`` parents if no job group is left in them."""
        for free in self._free:
            free._pool = None
            free.remove()
        self._free.clear()
        for handles in self._handles.values():
            handles.close()
        self._handles.clear()
        for parent in dict.fromkeys(self.parents.values()):
            with contextlib.suppress(OSError):
                os.rmdir(parent)

    def leftovers(self) -> list[str]:
        """Job ids with a group under this daemon's parent."""
        ids: set[str] = set()
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                for name in os.listdir(parent):
                    job_id = job_id_of(name)
                    if job_id is not None and os.path.isdir(os.path.join(parent, name)):
                        ids.add(job_id)
        return sorted(ids)
