"""What every case gets: sizes for full or quick runs, and ways to run clients and timed commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.daemon import proc_cpu_seconds
from bench.stats import median

__all__ = ["GIB", "Context", "CpuMeter", "fmt_bytes", "timed_pipe"]

T = TypeVar("T")
GIB = float(1 << 30)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Context:
    """Options of this run, shared by every case."""

    quick: bool
    out: Path
    runs: int
    soak_minutes: float

    @property
    def log_dir(self) -> Path:
        return self.out / "logs"

    def pick(self, full: Any, quick: Any) -> Any:
        """``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full

    def log(self, message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    def client(
        self, name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900
    ) -> dict[str, Any]:
        """Run ``bench.clients NAME ARGS`` in its own process and return its JSON result."""
        proc = subprocess.run(
            [sys.executable, "-m", "bench.clients", name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"client {name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    def spawn_client(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a long-running client (stdin is its stop signal: close it to end the client)."""
        return subprocess.Popen(
            [sys.executable, "-m", "bench.clients", name, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    @staticmethod
    def timed(argv: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> float:
        """Wall seconds of ``argv`` (output discarded); raise if it fails."""
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=timeout, check=False
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}): {proc.stderr.decode()[-1000:]}")
        return seconds


@dataclass
class CpuMeter:
    """CPU seconds (user + system) of one process per unit of work, one sample per round.

    ``per`` is the round's amount of work in the unit reported (GiB, jobs, …);
    ``scale`` turns seconds into the unit shown (1000 for ms).
    """

    per: float
    scale: float = 1.0
    samples: list[float] = field(default_factory=list)

    def measure(self, pid: int, fn: Callable[[], T]) -> T:
        """Run ``fn`` and record what ``pid`` spent meanwhile (its own process, not its children)."""
        before = proc_cpu_seconds(pid)
        result = fn()
        self.add(proc_cpu_seconds(pid) - before)
        return result

    def add(self, seconds: float) -> None:
        """Record one round's CPU seconds measured elsewhere (a client's own, a ``time`` report)."""
        self.samples.append(seconds * self.scale / self.per)

    @property
    def median(self) -> float:
        return median(self.samples)


def timed_pipe(producer: str, consumer: str = "cat", timeout: float = 900) -> tuple[float, float]:
    """Wall seconds of ``producer | consumer >/dev/null`` under zsh, and the consumer's CPU seconds.

    The consumer runs under ``/usr/bin/time`` (10 ms resolution), so only its own
    process is counted, as only the daemon's own process is on ccxd's side.
    """
    gnu_time = shutil.which("time") or "/usr/bin/time"
    fd, report = tempfile.mkstemp(prefix="ccxd-bench-time-")
    os.close(fd)
    try:
        seconds = Context.timed(
            ["zsh", "-c", f"{producer} | {gnu_time} -f '%U %S' -o {report} {consumer} >/dev/null"],
            timeout=timeout,
        )
        fields = Path(report).read_text().split()
        return seconds, float(fields[-2]) + float(fields[-1])
    finally:
        os.unlink(report)


def read_json_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The next JSON line a spawned client prints."""
    assert proc.stdout is not None
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        proc.kill()
        raise RuntimeError(f"client printed nothing within {timeout}s")
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"client ended early: {err[-2000:]}")
    result: dict[str, Any] = json.loads(line)
    return result


def finish_client(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """Close a spawned client's stdin and return its final JSON."""
    out, err = proc.communicate("", timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"client failed ({proc.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def fmt_bytes(n: float) -> str:
    """``1 GiB``, ``16 MiB`` …"""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n:g} B"
