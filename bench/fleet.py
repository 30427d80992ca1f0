"""A fleet for the fleet cases: a password-protected redis-server on a loopback port and N ccxd nodes.

The nodes share the machine's network namespace (the goal is "on loopback"),
each with its own state and runtime directories (:class:`BenchDaemon`); their
settings go in as ``CCXD_*`` variables.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.daemon import BenchDaemon

__all__ = ["BenchFleet", "FleetRedis", "rpc"]

USER = "ccxd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc(sock: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    """One JSON-RPC call on a daemon's Unix socket; its result."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        msg["params"] = params
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock))
        s.sendall(json.dumps(msg).encode() + b"\n")
        buf = b""
        while True:
            while b"\n" not in buf:
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("daemon closed the connection")
                buf += data
            line, buf = buf.split(b"\n", 1)
            reply = json.loads(line)
            if "method" in reply:
                continue  # a notification
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]


class FleetRedis:
    """redis-server on 127.0.0.1:<free port>: default user off, one ACL user with a password."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ccxd-fr-"))
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{USER}:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, username=USER, password=self.password)

    def start(self) -> FleetRedis:
        conf = self.tmp / "redis.conf"
        conf.write_text(
            f'bind 127.0.0.1\nport {self.port}\ndir {self.tmp}\nappendonly no\nsave ""\n'
            f"user default off\nuser {USER} on >{self.password} ~* &* +@all\n"
        )
        conf.chmod(0o600)
        self.proc = subprocess.Popen(
            ["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError), self.client() as r:
                if r.ping():
                    return self
            time.sleep(0.02)  # redis-server has no readiness signal
        self.stop()
        raise RuntimeError("redis-server did not start")

    def used_memory(self) -> int:
        """Bytes Redis holds for its data (``INFO memory`` used_memory)."""
        with self.client() as r:
            return int(r.info("memory")["used_memory"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.tmp, ignore_errors=True)


class BenchFleet:
    """``names`` nodes (labels ``zone`` = name in lower case) on one :class:`FleetRedis`."""

    def __init__(
        self,
        log_dir: Path,
        names: tuple[str, ...] = ("A", "B", "C"),
        *,
        slots: int = 8,
        lease: float = 3.0,
        name: str = "fleet",
    ) -> None:
        self.log_dir = log_dir
        self.names = names
        self.slots = slots
        self.lease = lease
        self.name = name
        self.redis = FleetRedis()
        self.nodes: dict[str, BenchDaemon] = {}

    def __enter__(self) -> BenchFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.redis.start()
        key = self.redis.tmp / "fleet.key"
        subprocess.run(
            [sys.executable, "-m", "ccxctl", "fleet-key", str(key)], check=True, capture_output=True
        )
        for n in self.names:
            settings = {
                "fleet": "true",
                "redis_url": self.redis.url,
                "node_name": n,
                "node_labels": f"zone={n.lower()}",
                "node_slots": str(self.slots),
                "node_lease": str(self.lease),
                "max_concurrent_jobs": str(max(64, self.slots)),
            }
            d = BenchDaemon(self.log_dir, settings, name=f"{self.name}-{n}")
            own_key = d.tmp / "config" / "fleet.key"
            shutil.copyfile(key, own_key)
            own_key.chmod(0o600)
            d.env["CCXD_FLEET_KEY_FILE"] = str(own_key)
            self.nodes[n] = d
        for d in self.nodes.values():
            d.start()
        self.wait_states(dict.fromkeys(self.names, "up"), 10 + self.lease)

    def states(self, via: str | None = None) -> dict[str, str]:
        node = self.nodes[via or self.names[0]]
        return {n["name"]: n["state"] for n in rpc(node.socket, "node.list")["nodes"]}

    def wait_states(self, want: dict[str, str], timeout: float, via: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            seen = self.states(via)
            if all(seen.get(k) == v for k, v in want.items()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nodes not {want} within {timeout} s: {seen}")

    def stop(self) -> None:
        for d in self.nodes.values():
            with contextlib.suppress(Exception):
                d.stop()
        self.redis.stop()
