"""A real redis-server per test, on a private Unix socket."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool


class RedisProcess:
    """A redis-server started by a test; restartable on the same socket and data."""

    def __init__(self, root: Path, *, persistent: bool = True) -> None:
        self.root = root
        self.persistent = persistent
        self.socket = root / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        binary = require_tool("redis-server")
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.root),
                "--appendonly",
                "yes" if self.persistent else "no",
                "--save",
                "",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        out = b""
        for _ in range(500):
            if self.socket.exists():
                out = subprocess.run(
                    ["redis-cli", "-s", str(self.socket), "ping"], capture_output=True, check=False
                ).stdout
                if out.strip() == b"PONG":
                    return self
            time.sleep(0.01)  # redis-server offers no readiness signal we can wait on
        raise RuntimeError(f"redis-server did not start: {out!r}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def cont(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_root: Path) -> Iterator[RedisProcess]:
    r = RedisProcess(tmp_root).start()
    yield r
    r.stop()
