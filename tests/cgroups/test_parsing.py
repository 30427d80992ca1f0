"""The sans-I/O parts of resource control: sizes, mounts, /proc/PID/cgroup, usage."""

from __future__ import annotations

import os
import stat

import pytest

from ccxd.cgroups.base import RawSample
from ccxd.cgroups.join import resolve_program, wrap_argv
from ccxd.cgroups.limits import format_size, parse_size, resolve_limits
from ccxd.cgroups.mounts import parse_mountinfo, parse_proc_cgroup
from ccxd.cgroups.usage import next_usage
from ccxd.cgroups.v1 import blkio_weight
from ccxd.proc.spawn import SpawnError
from ccxd.protocol import Limits


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2G", 2 << 30),
        ("512M", 512 << 20),
        ("1.5GiB", 3 << 29),
        ("64k", 64 << 10),
        ("100", 100),
        (" 3 MB ", 3 << 20),
        (4096, 4096),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["2X", "", "G", "-1", "0", "0.1"])
def test_bad_sizes_name_the_value(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_format_size():
    assert [format_size(n) for n in (512, 64 << 20, 3 << 29)] == ["512", "64.0M", "1.5G"]


def test_request_overrides_defaults_field_by_field():
    defaults = Limits(memory=1 << 30, cpus=2.0, pids=100)
    got = resolve_limits("512M", None, 10, None, defaults)
    assert got == Limits(memory=512 << 20, cpus=2.0, pids=10)


MOUNTINFO = """\
25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,pids
"""


def test_mountinfo_lists_both_versions_with_controllers():
    hs = parse_mountinfo(MOUNTINFO)
    assert [(h.mount, h.version) for h in hs] == [
        ("/sys/fs/cgroup/unified", 2),
        ("/sys/fs/cgroup/cpu,cpuacct", 1),
        ("/sys/fs/cgroup/memory", 1),
        ("/sys/fs/cgroup/systemd", 1),
        ("/sys/fs/cgroup/with space", 1),
    ]
    assert hs[1].controllers == {"cpu", "cpuacct"}
    assert "name=systemd" in hs[3].controllers


def test_proc_cgroup_gives_the_v2_path_and_each_v1_controller():
    v2, v1 = parse_proc_cgroup(
        "12:pids:/a\n4:cpu,cpuacct:/b/c\n1:name=systemd:/s\n0::/system.slice/ccxd.service\n"
    )
    assert v2 == "/system.slice/ccxd.service"
    assert v1 == {"pids": "/a", "cpu": "/b/c", "cpuacct": "/b/c", "name=systemd": "/s"}
    assert parse_proc_cgroup("0::/\n") == ("/", {})


def test_usage_rates_peaks_and_totals():
    first = next_usage(None, RawSample(cpu_seconds=1.0, memory=100, pids=2, memory_peak=150), 10.0)
    assert (first.cpu_percent, first.memory_peak, first.pids_peak) == (0.0, 150, 2)
    second = next_usage(first, RawSample(cpu_seconds=1.5, memory=300, pids=1), 11.0)
    assert second.cpu_percent == 50.0 and second.memory_peak == 300 and second.pids_peak == 2
    # A group read after its processes left (none backend) keeps the totals.
    last = next_usage(second, RawSample(cpu_seconds=0.0, memory=0, pids=0), 12.0)
    assert last.cpu_seconds == 1.5 and last.memory_peak == 300 and last.memory == 0


def test_io_weight_maps_to_v1_blkio_like_systemd():
    assert [blkio_weight(w) for w in (1, 100, 200, 10000)] == [10, 500, 1000, 1000]


def test_wrapper_resolves_the_program_first(tmp_path):
    env = {"PATH": "/nonexistent:/bin:/usr/bin"}
    argv = wrap_argv(["sh", "-c", "true"], ["/x/cgroup.procs"], str(tmp_path), env)
    assert argv[:2] == ["/bin/sh", "-c"] and argv[4:] == ["1", "/x/cgroup.procs", "/bin/sh", "-c", "true"]
    assert wrap_argv(["sh"], [], str(tmp_path), env) == ["sh"]
    with pytest.raises(SpawnError, match="'no-such-prog' not found"):
        resolve_program("no-such-prog", str(tmp_path), env)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(SpawnError, match="not executable"):
        resolve_program("./script", str(tmp_path), env)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert resolve_program("./script", str(tmp_path), env) == os.path.join(str(tmp_path), "./script")
