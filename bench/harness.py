"""What every case gets: sizes for full or quick runs, and ways to run clients and timed commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Context", "fmt_bytes"]

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
