"""Describe the machine and the software versions a run measured."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any

from bench.report import IDLE_LOAD

__all__ = ["describe", "load1", "loadavg"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def _tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "missing"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0][:80] if text else "?"


def _dpkg_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "missing"


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def file_create_ms(directory: str | None = None, count: int = 100) -> float:
    """Median milliseconds to create (and close) one empty file: ccxd creates a few per job."""
    import statistics
    import tempfile
    import time

    times = []
    with tempfile.TemporaryDirectory(prefix="ccxd-fs-", dir=directory) as d:
        for i in range(count):
            t0 = time.perf_counter()
            fd = os.open(f"{d}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.close(fd)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def loadavg() -> str:
    """The 1/5/15-minute load averages (the machine may be shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _shim() -> str:
    """The job shim the daemons will use: without one, jobs run under the pipe engine (other figures)."""
    from ccxd.supervision.shim import find_shim

    path = find_shim()
    return path if path else "MISSING (jobs run without it: build it with python -m ccxd.supervision.shim)"


def load1() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def describe() -> dict[str, Any]:
    """CPU, cores, memory, kernel, Python and the versions of everything measured."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": _mem_gib(),
        "kernel": platform.release(),
        "os": _tool_version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "ccxd": _pkg("ccxd"),
        "uvloop": _pkg("uvloop"),
        "websockets": _pkg("websockets"),
        "msgspec": _pkg("msgspec"),
        "redis-py": _pkg("redis"),
        "redis-server": _tool_version(["redis-server", "--version"]).split(" sha=")[0],
        "zsh": _tool_version(["zsh", "--version"]),
        "websocketd": _dpkg_version("websocketd"),
        "task-spooler": _dpkg_version("task-spooler"),
        "file create": f"{file_create_ms():.2f} ms",
        "processes": sum(1 for p in os.listdir("/proc") if p.isdigit()),
        "ccxd-shim": _shim(),
        "load at start": loadavg(),
        "idle at start": load1() <= IDLE_LOAD,
    }
