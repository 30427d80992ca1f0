"""Start and stop the processes a case measures: ccxd (under ``/usr/bin/time -v``) and redis-server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["BenchDaemon", "RedisServer", "proc_cpu_seconds", "proc_fds", "proc_rss_kib", "tree_cpu_seconds"]


def proc_rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_fds(pid: int) -> int:
    """Open file descriptors of ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_fd_targets(pid: int) -> dict[int, str]:
    """What each open descriptor of ``pid`` points to."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _stat_times(pid: int) -> tuple[int, int]:
    """(own, reaped children's) CPU ticks of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants and every child they reaped (a whole pipeline's).

    A job that ended and was reaped within the tree is in its reaper's
    children's time; a process still running (redis-server, a spawn server) in
    its own.
    """
    ticks = 0
    for p in (pid, *_descendants(pid)):
        try:
            own, reaped = _stat_times(p)
        except (OSError, IndexError, ValueError):
            continue
        ticks += own + reaped
    return ticks / os.sysconf("SC_CLK_TCK")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CCXD_", "CC_EXECUTOR_", "NOTIFY_SOCKET", "WATCHDOG_"))
        and k not in ("REDIS_URL", "STREAM_TIMEOUT", "MAX_BUFFER_SIZE", "LOG_LEVEL")
    }


def _tmpfs_dir() -> str | None:
    """A tmpfs directory for runtime files (``/run/user/UID`` or ``/dev/shm``), else the default."""
    for path in (f"/run/user/{os.getuid()}", "/dev/shm"):  # a private mkdtemp is made inside
        if os.path.isdir(path) and os.access(path, os.W_OK):
            return path
    return None


class BenchDaemon:
    """A ccxd on private temporary paths, run under ``/usr/bin/time -v`` for its peak RSS.

    ``settings`` are config keys (``{"store": "memory"}``), passed as ``CCXD_*``.
    """

    def __init__(
        self, log_dir: Path, settings: dict[str, str] | None = None, name: str = "ccxd", nofile: int = 0
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ccxd-b-"))  # short: socket paths are limited to 108 bytes
        self.log_dir = log_dir
        self.name = name
        # The runtime directory is on tmpfs, as systemd's $XDG_RUNTIME_DIR (/run/user/UID) is.
        self.runtime = Path(tempfile.mkdtemp(prefix="ccxd-b-", dir=_tmpfs_dir()))
        self.socket = self.runtime / "ccxd" / "ccxd.sock"
        self.env = _clean_env()
        for sub in ("state", "config"):
            (self.tmp / sub).mkdir(mode=0o700)
        self.env.update(
            XDG_RUNTIME_DIR=str(self.runtime),
            XDG_STATE_HOME=str(self.tmp / "state"),
            XDG_CONFIG_HOME=str(self.tmp / "config"),
            CCXD_WS_PORT="0",
        )
        for key, value in (settings or {}).items():
            self.env[f"CCXD_{key.upper()}"] = value
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.nofile = nofile
        """Descriptors to allow the daemon (raising the hard limit where we may); 0 keeps ours."""
        self._time_file = self.tmp / "time.txt"
        self.time_v: dict[str, str] = {}

    @property
    def client_env(self) -> dict[str, str]:
        """Environment for a client of this daemon (``CCXD_SOCKET``)."""
        env = _clean_env()
        env["CCXD_SOCKET"] = str(self.socket)
        return env

    def start(self, timeout: float = 30.0) -> BenchDaemon:
        """Start ccxd and wait for READY=1."""
        notify_path = self.tmp / "notify.sock"
        notify_path.unlink(missing_ok=True)  # a daemon started again (after :meth:`kill`)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(timeout)
        env = dict(self.env, NOTIFY_SOCKET=str(notify_path))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "ccxd"]
        if shutil.which("time") or Path("/usr/bin/time").exists():
            argv = ["/usr/bin/time", "-v", "-o", str(self._time_file), *argv]
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            preexec_fn=self._limits if self.nofile else None,  # the harness runs no threads
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    msg, _ = notify.recvfrom(4096)
                except TimeoutError:
                    break
                fields = dict(
                    line.split("=", 1) for line in msg.decode(errors="replace").splitlines() if "=" in line
                )
                if "MAINPID" in fields:
                    self.pid = int(fields["MAINPID"])
                if fields.get("READY") == "1":
                    self.pid = self.pid or _daemon_pid(self.proc.pid)
                    return self
        finally:
            notify.close()
        self.stop()
        raise RuntimeError(f"ccxd did not become ready; see {self.log_dir / (self.name + '.log')}")

    def kill(self) -> None:
        """SIGKILL the daemon and its redis-server, as a crash would, keeping every file for :meth:`start`."""
        assert self.proc is not None
        victims = [self.pid, *(p for p in _descendants(self.pid) if _comm(p) == "redis-server")]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(60)
        for pid in victims[1:]:
            while Path(f"/proc/{pid}").exists() and _comm(pid) == "redis-server":
                time.sleep(0.01)
        self._log.close()

    def _limits(self) -> None:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, self.nofile), max(hard, self.nofile)))

    def status(self) -> dict[str, Any]:
        """``daemon.status`` as plain JSON."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.socket))
            sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"daemon.status"}\n')
            buf = b""
            while b"\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("daemon closed the connection")
                buf += data
        result: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])["result"]
        return result

    def ws_url(self) -> str:
        """The WebSocket URL ``daemon.status`` reports."""
        for listener in self.status()["listeners"]:
            if listener["kind"] == "websocket":
                return str(listener["address"])
        raise LookupError("the daemon has no WebSocket listener")

    @property
    def token(self) -> str:
        """The WebSocket bearer token."""
        return (self.tmp / "config" / "ccxd" / "token").read_text().strip()

    def stop(self) -> None:
        """SIGTERM, wait, collect ``time -v`` figures, remove the temporary tree."""
        if self.proc is not None and self.proc.poll() is None:
            if self.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                if self.pid:
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()
        if self._time_file.exists():
            for line in self._time_file.read_text().splitlines():
                key, sep, value = line.strip().rpartition(": ")
                if sep:
                    self.time_v[key] = value
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.runtime, ignore_errors=True)

    @property
    def max_rss_kib(self) -> int:
        """Peak RSS of the daemon process, from ``time -v`` (after :meth:`stop`)."""
        return int(self.time_v.get("Maximum resident set size (kbytes)", "0"))

    def __enter__(self) -> BenchDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _daemon_pid(wrapper_pid: int) -> int:
    """The ccxd process: the wrapper itself, or its child when run under ``time``."""
    try:
        with open(f"/proc/{wrapper_pid}/task/{wrapper_pid}/children") as f:
            children = f.read().split()
    except OSError:
        return wrapper_pid
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if re.search(rb"-m\x00ccxd", cmdline):
            return int(child)
    return wrapper_pid


class RedisServer:
    """A throwaway redis-server on a Unix socket, without persistence (for populating history)."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ccxd-r-"))
        self.socket = self.tmp / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.socket.exists():
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(self.socket))
                        s.sendall(b"PING\r\n")
                        if s.recv(64).startswith(b"+PONG"):
                            return self
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
