"""A fleet on one machine: network namespaces, a Redis with a password, three ccxd nodes.

Layout (``netns=True``, the default; needs root and iproute2)::

    namespace <tag>-hub : bridge br0 10.231.X.1/24, redis-server on 10.231.X.1:6379
    namespace <tag>-A   : eth0 10.231.X.11/24  ── veth vA ── br0    ccxd "A"
    namespace <tag>-B   : eth0 10.231.X.12/24  ── veth vB ── br0    ccxd "B"
    namespace <tag>-C   : eth0 10.231.X.13/24  ── veth vC ── br0    ccxd "C"

Every address is one this harness made, inside namespaces it made: no traffic
leaves them.  Daemons are started with ``nsenter --net`` rather than
``ip netns exec``: the latter remounts /sys for the namespace, which hides the
cgroup hierarchies under /sys/fs/cgroup from the daemon and its jobs.  Unix
sockets are named by path, so the test process (in the root namespace) reaches
every daemon's socket, and Redis's own Unix socket, directly.

With ``netns=False`` Redis listens on a loopback port and the daemons share the
root namespace, each with its own state and runtime directories: what the
Sentinel failover test uses, whose Redis topology lives on loopback.

Teardown (:meth:`Fleet.close`) runs even after a failed start: it stops every
daemon, kills whatever still runs in the node namespaces (jobs under ccxd-shim
outlive a killed daemon), stops Redis and deletes the namespaces.  With
``CCXD_FLEET_KEEP=1`` the directory with every node's log is kept.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import redis

from tests.conftest import DaemonProcess, remove_cgroups_of, require_tool

__all__ = ["NAMES", "Fleet", "FleetRedis", "Netns", "Node", "wait_until"]

T = TypeVar("T")

NAMES = ("A", "B", "C")
REDIS_USER = "ccxd"
REDIS_PORT = 6379
"""Redis's port in the hub namespace: the namespace is the test's own, so no port can clash."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last: {last!r})")
        time.sleep(interval)


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class Netns:
    """The namespaces of one fleet: a hub with a bridge, one namespace per node wired to it."""

    def __init__(self, names: Iterable[str]) -> None:
        require_tool("ip")
        require_tool("nsenter")
        # Unique per test run (parallel workers never collide); the pid lets a later run remove
        # what a killed one left (:func:`sweep_stale`).
        self.tag = f"ccxf{os.getpid()}x{secrets.token_hex(2)}"
        # The subnet lives only inside our namespaces; random so a leftover of a crashed run
        # is never mistaken for ours when reading addresses in a log.
        self.prefix = f"10.231.{secrets.randbelow(256)}"
        self.hub = f"{self.tag}-hub"
        self.names = list(names)
        self.made: list[str] = []

    def ns(self, name: str) -> str:
        """The namespace of node ``name``."""
        return f"{self.tag}-{name}"

    @property
    def hub_address(self) -> str:
        return f"{self.prefix}.1"

    def address(self, name: str) -> str:
        """Node ``name``'s address on the bridge."""
        return f"{self.prefix}.{11 + self.names.index(name)}"

    def enter(self, ns: str) -> list[str]:
        """The argv prefix that runs a command in namespace ``ns`` (network only)."""
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def create(self) -> None:
        """Make the hub, its bridge, and a wired namespace per node."""
        sweep_stale()
        self._add(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{self.hub_address}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for name in self.names:
            ns = self.ns(name)
            self._add(ns)
            # Made inside the hub with its peer moved straight into the node: no name in the
            # root namespace, so parallel runs cannot clash on interface names.
            _ip(
                "-n", self.hub, "link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", ns
            )
            _ip("-n", self.hub, "link", "set", f"v{name}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def _add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")  # the daemon's WebSocket listens on 127.0.0.1

    def link_down(self, name: str) -> None:
        """Cut node ``name`` off: its bridge port goes down (its packets go nowhere, as in a partition)."""
        _ip("-n", self.hub, "link", "set", f"v{name}", "down")

    def link_up(self, name: str) -> None:
        _ip("-n", self.hub, "link", "set", f"v{name}", "up")

    def pids(self, ns: str) -> list[int]:
        """Processes living in namespace ``ns``."""
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
        return [int(p) for p in out.split()]

    def destroy(self) -> None:
        """Kill everything left in our namespaces, then delete them."""
        for ns in reversed(self.made):
            for _ in range(50):
                pids = self.pids(ns)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.made.clear()


def sweep_stale() -> None:
    """Delete the namespaces (and kill their processes) of harness runs whose process is gone.

    A run killed outright (SIGKILL, a CI timeout) cannot tear down; its
    namespaces are named ``ccxf<pid>x…``.
    """
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for ns in (line.split()[0] for line in out.splitlines() if line.strip()):
        m = re.fullmatch(r"ccxf(\d+)x[0-9a-f]{4}-\w+", ns)
        if m is None or Path(f"/proc/{m.group(1)}").exists():
            continue
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


class FleetRedis:
    """The fleet's redis-server: an ACL user with a password, default user off, on TCP and a Unix socket.

    The nodes use TCP (``url``); the test inspects keys through the Unix socket
    (``client()``), which it reaches from any namespace.
    """

    def __init__(self, root: Path, host: str, port: int, enter: list[str]) -> None:
        self.root = root
        self.host = host
        self.port = port
        self.enter = enter
        self.password = secrets.token_hex(16)
        self.socket = root / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What the nodes' ``redis_url`` says."""
        return f"redis://{REDIS_USER}:{self.password}@{self.host}:{self.port}/0"

    def start(self) -> FleetRedis:
        binary = require_tool("redis-server")
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "redis.conf"
        # A config file rather than arguments: the password stays out of ps.
        conf.write_text(
            f"bind {self.host}\nport {self.port}\nprotected-mode no\n"
            f"unixsocket {self.socket}\nunixsocketperm 700\ndir {self.root}\n"
            'appendonly yes\nsave ""\nloglevel warning\n'
            "user default off\n"
            f"user {REDIS_USER} on >{self.password} ~* &* +@all\n"
        )
        conf.chmod(0o600)
        self.log = open(self.root / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [*self.enter, binary, str(conf)], stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL
        )
        # redis-server offers no readiness signal: poll PING on its socket.
        wait_until(self._ping, 20, "redis-server answers PING")
        return self

    def _ping(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.root / 'redis.log').read_text()[-2000:]}")
        try:
            with self.client() as r:
                return bool(r.ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        """A plain client as the fleet's ACL user, on the Unix socket (close it, or use ``with``)."""
        return redis.Redis(
            unix_socket_path=str(self.socket), username=REDIS_USER, password=self.password, socket_timeout=10
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()


def _toml(value: object) -> str:
    """A TOML value for the config files (strings, numbers, booleans, tables of strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


class Node:
    """One ccxd of the fleet: its own state, runtime and config directories, maybe its own namespace."""

    def __init__(self, fleet: Fleet, name: str, settings: dict[str, object]) -> None:
        self.fleet = fleet
        self.name = name
        self.ns = fleet.net.ns(name) if fleet.net else None
        self.enter = fleet.net.enter(self.ns) if fleet.net and self.ns else []
        self.daemon = DaemonProcess(fleet.root / name)
        self.daemon.command = [*self.enter, sys.executable, "-m", "ccxd"]
        self.settings = settings
        self.write_config()

    @property
    def socket(self) -> Path:
        return self.daemon.socket

    @property
    def config_path(self) -> Path:
        return self.daemon.config_home / "ccxd" / "config.toml"

    def write_config(self) -> None:
        """``$XDG_CONFIG_HOME/ccxd/config.toml`` from :attr:`settings`, as a user would write it."""
        self.config_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = "".join(f"{key} = {_toml(value)}\n" for key, value in self.settings.items())
        self.config_path.write_text(text)
        self.config_path.chmod(0o600)

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid  # nsenter execs the daemon: same process

    @property
    def running(self) -> bool:
        return self.daemon.proc is not None and self.daemon.proc.poll() is None

    def start(self, timeout: float = 30.0) -> Node:
        self.daemon.start(timeout)
        # A fleet node's STATUS= changes with every heartbeat: read them as a service manager
        # would, or the daemon queues them and waits for them on its way out.
        threading.Thread(target=self._read_notify, args=(self.daemon._notify,), daemon=True).start()
        return self

    def _read_notify(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        while True:
            try:
                self.daemon.notify_messages.append(sock.recv(4096).decode())
            except OSError:  # closed (or made non-blocking) by DaemonProcess.stop
                return

    def stop(self) -> None:
        self.daemon.stop()

    def kill9(self, everything: bool = False) -> None:
        """SIGKILL the daemon, as a crash would; its jobs under ccxd-shim run on.

        ``everything``: kill every process of its namespace too (the machine died).
        """
        os.kill(self.pid, signal.SIGKILL)
        assert self.daemon.proc is not None
        self.daemon.proc.wait(30)
        self.daemon.stop()  # closes its log and notify socket; the process is gone already
        if everything and self.ns and self.fleet.net:
            for pid in self.fleet.net.pids(self.ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def restart(self) -> Node:
        """Start the daemon again on the same directories (after :meth:`kill9` or :meth:`stop`)."""
        if self.running:
            self.daemon.stop()
        return self.start()

    def log(self) -> str:
        return self.daemon.log()

    async def client(self) -> Any:
        """A client-library connection to this node's Unix socket (``async with``)."""
        from ccxd.client import connect

        return await connect(self.socket, reconnect=False)

    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``ccxctl ARGS`` run on this node (in its namespace) against its socket."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCXD_")}
        env["CCXD_SOCKET"] = str(self.socket)
        proc = subprocess.run(
            [*self.enter, sys.executable, "-m", "ccxctl", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
            cwd=self.fleet.root,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ccxctl {' '.join(args)} on {self.name} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One JSON-RPC request on the Unix socket; its result (raises on an error reply)."""
        from tests.helpers import RawConnection

        conn = RawConnection(self.socket)
        try:
            reply = conn.call(method, params)
        finally:
            conn.close()
        if "error" in reply:
            raise RuntimeError(f"{method} on {self.name}: {reply['error']}")
        return reply["result"]


class Fleet:
    """Redis and the nodes A, B, C (``with Fleet(...) as fleet``; teardown even on failure)."""

    def __init__(
        self,
        *,
        fleet_mode: bool = True,
        netns: bool = True,
        names: Iterable[str] = NAMES,
        lease: float = 3.0,
        slots: int = 8,
        labels: dict[str, dict[str, str]] | None = None,
        redis_url: Callable[[Fleet], str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.names = list(names)
        self.fleet_mode = fleet_mode
        self.lease = lease
        self.slots = slots
        self.labels = labels if labels is not None else default_labels(self.names)
        self.extra = extra or {}
        # Short: Unix socket paths are limited to 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="ccxf-"))
        self.root.chmod(0o755)
        self.net = Netns(self.names) if netns else None
        self.redis: FleetRedis | None = None
        self._redis_url = redis_url
        self.nodes: dict[str, Node] = {}
        self.key_file = self.root / "fleet.key"

    def __enter__(self) -> Fleet:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def open(self) -> None:
        """Namespaces, Redis, the fleet key, then every node (started side by side)."""
        if self.net is not None:
            self.net.create()
            self.redis = FleetRedis(
                self.root / "redis", self.net.hub_address, REDIS_PORT, self.net.enter(self.net.hub)
            ).start()
        elif self._redis_url is None:
            from tests.conftest import free_port

            self.redis = FleetRedis(self.root / "redis", "127.0.0.1", free_port(), []).start()
        make_fleet_key(self.key_file)
        for name in self.names:
            self.nodes[name] = Node(self, name, self.settings(name))
        with concurrent.futures.ThreadPoolExecutor(len(self.names)) as pool:
            for future in [pool.submit(n.start) for n in self.nodes.values()]:
                future.result()

    @property
    def redis_url(self) -> str:
        if self._redis_url is not None:
            return self._redis_url(self)
        assert self.redis is not None
        return self.redis.url

    def settings(self, name: str) -> dict[str, object]:
        """Node ``name``'s config file: the same Redis and fleet key, its own name, labels, slots."""
        base: dict[str, object] = {"redis_url": self.redis_url, "max_concurrent_jobs": 64}
        if not self.fleet_mode:
            # Daemons sharing one Redis as today: separate histories keyed by node.
            return {**base, "node_id": name, **self.extra}
        key = self.root / name / "fleet.key"
        key.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.key_file, key)  # the same content on every node, each its own copy
        key.chmod(0o600)
        return {
            **base,
            "fleet": True,
            "node_name": name,
            "node_labels": self.labels.get(name, {}),
            "node_slots": self.slots,
            "node_lease": self.lease,
            "fleet_key_file": str(key),
            **self.extra,
        }

    def close(self) -> None:
        """Stop every daemon, kill what is left in the namespaces, stop Redis, delete the namespaces."""
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()
        if self.net is not None:
            self.net.destroy()
        else:
            for node in self.nodes.values():
                _kill_leftovers(node.daemon.root)
        if self.redis is not None:
            self.redis.stop()
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                remove_cgroups_of(node.daemon)
        if os.environ.get("CCXD_FLEET_KEEP") == "1":
            print(f"fleet logs kept in {self.root}", file=sys.stderr)  # debugging a failed run
            return
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers the tests use ------------------------------------------------

    def link_down(self, name: str) -> None:
        """Partition node ``name`` from Redis and the other nodes."""
        assert self.net is not None, "a partition needs network namespaces"
        self.net.link_down(name)

    def link_up(self, name: str) -> None:
        assert self.net is not None
        self.net.link_up(name)

    def kill9(self, name: str, everything: bool = False) -> None:
        self.nodes[name].kill9(everything)

    def restart(self, name: str) -> Node:
        return self.nodes[name].restart()

    def netns_inode(self, name: str) -> int:
        """The inode of node ``name``'s network namespace (what ``/proc/self/ns/net`` shows inside it)."""
        assert self.net is not None
        return os.stat(f"/run/netns/{self.net.ns(name)}").st_ino

    def node_states(self, via: str = "A") -> dict[str, str]:
        """``node.list`` asked of node ``via``: name → state."""
        return {n["name"]: n["state"] for n in self.nodes[via].call("node.list")["nodes"]}

    def node_infos(self, via: str = "A") -> dict[str, dict[str, Any]]:
        """``node.list`` asked of node ``via``: name → NodeInfo as JSON."""
        return {n["name"]: n for n in self.nodes[via].call("node.list")["nodes"]}

    def wait_states(self, want: dict[str, str], timeout: float, via: str = "A") -> dict[str, str]:
        """Wait until ``node.list`` on ``via`` shows each named node in the wanted state."""

        seen: dict[str, str] = {}

        def reached() -> bool:
            seen.clear()
            seen.update(self.node_states(via))
            return all(seen.get(k) == v for k, v in want.items())

        try:
            wait_until(reached, timeout, f"nodes {want} as seen from {via}", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; node.list says {seen}") from None
        return dict(seen)


def default_labels(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """``zone`` = the node's name in lower case; the last node also has ``gpu = "1"``."""
    names = list(names)
    labels = {n: {"zone": n.lower()} for n in names}
    labels[names[-1]]["gpu"] = "1"
    return labels


def make_fleet_key(path: Path) -> None:
    """A fleet key as a user makes one: ``ccxctl fleet-key PATH``; 32 random bytes in hex without it.

    The fallback writes what the contract describes (64 hex digits, mode 0600)
    so the harness runs before the command exists.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "ccxctl", "fleet-key", str(path)], capture_output=True, check=False
    )
    if proc.returncode == 0 and path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def _kill_leftovers(root: Path) -> None:
    """SIGKILL processes whose environment names ``root`` (jobs a killed daemon left under its shims)."""
    marker = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
