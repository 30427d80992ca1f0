"""Shared fixtures: a real ccxd daemon process on private temporary paths."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_TOOLS = os.environ.get("CCXD_REQUIRE_TOOLS") == "1" or os.environ.get("CI") == "true"


def free_port() -> int:
    """A loopback TCP port nobody listens on now (8003 may be another daemon's on this machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_tool(name: str) -> str:
    """Path of ``name``; skip when missing, but fail under CI (CCXD_REQUIRE_TOOLS=1)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if REQUIRE_TOOLS:
            pytest.fail(message + " (CI requires it: run scripts/dev test)")
        pytest.skip(message)
    return path


class DaemonProcess:
    """A ccxd started by a test, with its paths and environment."""

    def __init__(
        self, root: Path, extra_env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        self.root = root
        self.runtime = root / "run"
        self.state = root / "state"
        self.config_home = root / "config"
        for d in (self.runtime, self.state, self.config_home):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket = self.runtime / "ccxd" / "ccxd.sock"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CCXD_", "CC_EXECUTOR_", "NOTIFY_SOCKET", "WATCHDOG_"))
            and k not in ("REDIS_URL", "STREAM_TIMEOUT", "MAX_BUFFER_SIZE", "LOG_LEVEL")
        }
        self.env.update(
            XDG_RUNTIME_DIR=str(self.runtime),
            XDG_STATE_HOME=str(self.state),
            XDG_CONFIG_HOME=str(self.config_home),
            CCXD_LOG_LEVEL="debug",
            CCXD_WS_PORT="0",  # any free port: parallel daemons never clash (see ws_port)
        )
        self.env.update(extra_env or {})
        self.args = args or []
        self.command = [sys.executable, "-m", "ccxd"]
        """How ccxd is started: this tree's by default (tests/packaging: an installed one's)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "ccxd.log"
        self.notify_messages: list[str] = []
        # Socket activation: listening sockets handed over as systemd does (fd 3, 4, …).
        self.activation: list[tuple[socket.socket, str]] = []

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        """Start ccxd and wait for its READY=1 on a private NOTIFY_SOCKET."""
        notify_path = self.root / f"notify-{time.monotonic_ns()}.sock"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(notify_path))
        self._notify.settimeout(timeout)
        env = dict(self.env, NOTIFY_SOCKET=str(notify_path))
        self._log = open(self.log_path, "ab")
        self.stdout_path = self.root / "ccxd.stdout"
        self._stdout = open(self.stdout_path, "ab")
        argv = [*self.command, *self.args]
        if self.activation:
            # LISTEN_PID must be the daemon's own pid: a launcher sets it, then execs ccxd.
            launcher = Path(__file__).parent / "socket_activate.py"
            fds = [f"{sock.fileno()}:{name}" for sock, name in self.activation]
            argv = [sys.executable, str(launcher), *fds, "--", *argv]
        self.proc = subprocess.Popen(
            argv,
            pass_fds=[sock.fileno() for sock, _ in self.activation],
            env=env,
            stdout=self._stdout,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self._notify.recv(4096).decode()
            except TimeoutError:
                break
            self.notify_messages.append(msg)
            if "READY=1" in msg.split("\n"):
                return self
        self.stop()
        raise RuntimeError(f"ccxd did not become ready:\n{self.log()}")

    def next_notify(self, timeout: float = 10.0) -> str:
        """The next sd_notify datagram the daemon sends."""
        self._notify.settimeout(timeout)
        msg = self._notify.recv(4096).decode()
        self.notify_messages.append(msg)
        return msg

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None or self._log.closed:
            return self.proc.returncode if self.proc is not None else None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._stdout.close()
        # Keep what the daemon said on its way out (STOPPING=1) for the test to check.
        self._notify.setblocking(False)
        while True:
            try:
                self.notify_messages.append(self._notify.recv(4096).decode())
            except (BlockingIOError, OSError):
                break
        self._notify.close()
        return self.proc.returncode

    async def client(self):  # type: ignore[no-untyped-def]
        from ccxd.client import connect

        return await connect(self.socket)

    # -- WebSocket ------------------------------------------------------------

    @property
    def token_path(self) -> Path:
        """Where the daemon keeps its WebSocket token (unless CCXD_WS_TOKEN_FILE moves it)."""
        return Path(self.env.get("CCXD_WS_TOKEN_FILE") or self.config_home / "ccxd" / "token")

    @property
    def token(self) -> str:
        return self.token_path.read_text().strip()

    @property
    def ws_url(self) -> str:
        """The WebSocket listener as ``daemon.status`` reports it (real port), e.g. ws://127.0.0.1:40123/ws."""
        if getattr(self, "_ws_url", None) is None:
            self._ws_url = _status_listener(self.socket, "websocket")
        return self._ws_url

    @property
    def ws_port(self) -> int:
        return int(self.ws_url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def http_url(self) -> str:
        """``http(s)://host:port`` of the WebSocket listener (for GET /health)."""
        scheme, rest = self.ws_url.split("://", 1)
        return ("https" if scheme == "wss" else "http") + "://" + rest.split("/", 1)[0]


def _status_listener(path: Path, kind: str) -> str:
    """The address of the daemon's ``kind`` listener, asked over the Unix socket."""
    import json

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"daemon.status"}\n')
        buf = b""
        while b"\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("daemon closed the connection")
            buf += data
    status = json.loads(buf.split(b"\n", 1)[0])["result"]
    for listener in status["listeners"]:
        if listener["kind"] == kind:
            return str(listener["address"])
    raise LookupError(f"the daemon has no {kind} listener: {status['listeners']}")


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    # Short paths: Unix socket paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="ccxd-t-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.fixture
def daemon_factory(tmp_root: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[DaemonProcess] = []

    def make(
        extra_env: dict[str, str] | None = None,
        args: list[str] | None = None,
        start: bool = True,
        root: Path | None = None,
    ) -> DaemonProcess:
        d = DaemonProcess(root or tmp_root / f"d{len(started)}", extra_env, args)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        d.stop()
    for d in started:
        remove_cgroups_of(d)


def remove_cgroups_of(d: DaemonProcess) -> None:
    """Remove the empty job groups a stopped test daemon left (one it SIGKILLed cannot clean up).

    Without this every crash drill leaves a ``ccxd-<instance>`` group in each v1
    hierarchy of the machine running the tests.
    """
    from ccxd.cgroups.detect import instance_name
    from ccxd.cgroups.mounts import parse_mountinfo, parse_proc_cgroup

    name = f"ccxd-{instance_name(str(d.socket))}"
    try:
        own_v2, own_v1 = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
        hierarchies = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return
    for h in hierarchies:
        own = own_v2 if h.version == 2 else next((own_v1[c] for c in h.controllers if c in own_v1), None)
        if own is None:
            continue
        remove_empty_groups(os.path.join(h.mount, own.lstrip("/"), name))


def remove_empty_groups(parent: str) -> None:
    """Remove the cgroup ``parent`` and every group below it that holds no process."""
    if not os.path.isdir(parent):
        return
    for root, dirs, _ in os.walk(parent, topdown=False):
        for sub in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, sub))
    with contextlib.suppress(OSError):
        os.rmdir(parent)


@pytest.fixture
def daemon(daemon_factory) -> DaemonProcess:  # type: ignore[no-untyped-def]
    return daemon_factory()


@pytest.fixture
async def client(daemon: DaemonProcess):  # type: ignore[no-untyped-def]
    c = await daemon.client()
    yield c
    await c.close()


# What each kind of test needs, so `pytest -m "not qemu and not browser"` picks a fast set.
_NEEDS_BY_FIXTURE = {
    "daemon": "redis",
    "daemon_factory": "redis",
    "client": "redis",
    "redis_server": "redis",
    "claude_bin": "claude_cli",
    "fake_api": "claude_cli",
    "attacker": "root",
    "lair": "root",
    "squat": "root",
    "machine": "nspawn",
    "browser": "browser",
}
_NEEDS_BY_DIR = {"cgroups": "root", "security": "root", "system": "root"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the resources it needs (see ``markers`` in pyproject.toml)."""
    for item in items:
        needs = {_NEEDS_BY_FIXTURE[f] for f in getattr(item, "fixturenames", ()) if f in _NEEDS_BY_FIXTURE}
        parts = Path(str(item.fspath)).parts
        needs.update(_NEEDS_BY_DIR[p] for p in parts if p in _NEEDS_BY_DIR)
        if Path(str(item.fspath)).name.startswith("test_qemu"):
            needs.add("qemu")
        for name in sorted(needs):
            item.add_marker(name)
