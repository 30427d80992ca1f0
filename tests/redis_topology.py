"""A Redis with Sentinel for tests: a primary, one replica and three sentinels on loopback.

Every server demands a password: the data servers an ACL user (``USER``) for ccxd
and ``requirepass`` for replication and the sentinels, the sentinels their own
``requirepass``.  Use the ``redis_topology`` fixture (tests/conftest.py does not
know it: import it, ``from tests.redis_topology import redis_topology``), or
``RedisTopology(root).start()`` and ``stop()`` yourself.

    url = topo.url()                    # redis+sentinel://ccxd:…@127.0.0.1:p1,…/ccxd?sentinel_password=…
    old = topo.kill_primary()           # SIGKILL; returns its (host, port)
    new = topo.wait_promoted(old)       # a sentinel majority names another primary, which says it is one
    topo.client().get("key")            # a client of whichever server is the primary now
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import free_port, require_tool

__all__ = ["TLS", "RedisNode", "RedisTopology", "redis_topology"]

SERVICE = "ccxd"
USER = "ccxd"
PASSWORD = "ccxd-data-pw"
ADMIN_PASSWORD = "admin-pw"
SENTINEL_PASSWORD = "sentinel-pw"
HOST = "127.0.0.1"


class TLS:
    """Certificates for a TLS topology (``rediss+sentinel://``): every server's and the CA that signed them."""

    def __init__(self, ca: Path, cert: Path, key: Path) -> None:
        self.ca, self.cert, self.key = ca, cert, key

    def server_lines(self) -> list[str]:
        return [
            f"tls-cert-file {self.cert}",
            f"tls-key-file {self.key}",
            f"tls-ca-cert-file {self.ca}",
            "tls-auth-clients no",  # the passwords authenticate; TLS keeps them and the data private
            "tls-replication yes",  # replicas and sentinels talk TLS to the others too
        ]

    def client_kwargs(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca)}


class RedisNode:
    """One redis-server process (a data server or, with ``sentinel``, a sentinel)."""

    def __init__(
        self, root: Path, name: str, lines: list[str], *, sentinel: bool = False, tls: TLS | None = None
    ) -> None:
        self.root = root / name
        self.tls = tls
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.sentinel = sentinel
        self.password = SENTINEL_PASSWORD if sentinel else ADMIN_PASSWORD
        self.conf = self.root / ("sentinel.conf" if sentinel else "redis.conf")
        self.conf.write_text(
            "\n".join(
                [
                    *([f"port {self.port}"] if tls is None else ["port 0", f"tls-port {self.port}"]),
                    *(tls.server_lines() if tls is not None else []),
                    f"bind {HOST}",
                    f"dir {self.root}",
                    "loglevel notice",
                    f"logfile {self.root / 'log'}",
                    f"requirepass {self.password}",
                    *lines,
                ]
            )
            + "\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def start(self) -> RedisNode:
        binary = require_tool("redis-server")
        argv = [binary, str(self.conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _until(self._pings, 20.0, lambda: f"{self.name} did not start: {self.log()}")
        return self

    def _pings(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log()}")
        try:
            return bool(self.admin().ping())
        except redis.RedisError:
            return False

    def admin(self) -> redis.Redis:
        """A client with the server's own password (the default user)."""
        return redis.Redis(
            host=HOST,
            port=self.port,
            password=self.password,
            socket_timeout=5,
            socket_connect_timeout=5,
            **(self.tls.client_kwargs() if self.tls is not None else {}),
        )

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: whatever it had not sent on is gone."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RedisTopology:
    """A primary, one replica and three sentinels (quorum 2) in ``root``."""

    def __init__(self, root: Path, *, down_after_ms: int = 1000, tls: TLS | None = None) -> None:
        self.root = root
        self.tls = tls
        data = [
            f"user {USER} on >{PASSWORD} ~* &* +@all",
            f"masterauth {ADMIN_PASSWORD}",
            "appendonly no",
            'save ""',
        ]
        self.primary = RedisNode(root, "primary", data, tls=tls)
        self.replica = RedisNode(root, "replica", [*data, f"replicaof {HOST} {self.primary.port}"], tls=tls)
        self.data_nodes = [self.primary, self.replica]
        self.sentinels = [
            RedisNode(
                root,
                f"sentinel{i}",
                [
                    f"sentinel monitor {SERVICE} {HOST} {self.primary.port} 2",
                    f"sentinel auth-pass {SERVICE} {ADMIN_PASSWORD}",
                    f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
                    f"sentinel failover-timeout {SERVICE} 3000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                    # Sentinels with requirepass talk to each other with this password.
                    f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                ],
                sentinel=True,
                tls=tls,
            )
            for i in range(3)
        ]

    def start(self, timeout: float = 30.0) -> RedisTopology:
        """Start everything; return once replication is up and every sentinel knows the others and the replica."""
        try:
            for node in (*self.data_nodes, *self.sentinels):
                node.start()
            _until(self._settled, timeout, "the sentinels did not settle")
        except BaseException:
            self.stop()
            raise
        return self

    def _settled(self) -> bool:
        info = self.replica.admin().info("replication")
        if info.get("master_link_status") != "up":
            return False
        for s in self.sentinels:
            c = s.admin()
            peers = c.sentinel_sentinels(SERVICE)
            if not isinstance(peers, list) or len(peers) < 2 or not c.sentinel_slaves(SERVICE):
                return False
        return True

    def url(
        self,
        *,
        user: str = USER,
        password: str = PASSWORD,
        sentinel_password: str | None = SENTINEL_PASSWORD,
        scheme: str = "redis+sentinel",
        db: int = 0,
    ) -> str:
        """The redis_url that reaches the primary through the three sentinels."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        query = [f"db={db}"] if db else []
        if sentinel_password is not None:
            query.append(f"sentinel_password={sentinel_password}")
        return f"{scheme}://{user}:{password}@{hosts}/{SERVICE}" + ("?" + "&".join(query) if query else "")

    def primary_address(self) -> tuple[str, int] | None:
        """The primary a majority of the sentinels that answer names now (None: no majority)."""
        votes: dict[tuple[str, int], int] = {}
        for s in self.sentinels:
            if not s.alive:
                continue
            with contextlib.suppress(redis.RedisError):
                found = s.admin().sentinel_get_master_addr_by_name(SERVICE)
                if isinstance(found, tuple):
                    host, port = found
                    addr = (host.decode() if isinstance(host, bytes) else host, int(port))
                    votes[addr] = votes.get(addr, 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best is not None and best[1] >= 2 else None

    def node_at(self, address: tuple[str, int]) -> RedisNode:
        return next(n for n in self.data_nodes if n.address == address)

    def current_primary(self) -> RedisNode:
        addr = self.primary_address()
        assert addr is not None, "the sentinels name no primary"
        return self.node_at(addr)

    def client(self, *, decode_responses: bool = False) -> redis.Redis:
        """A client (the ACL user) of the server the sentinels name primary now."""
        host, port = self.current_primary().address
        tls = self.tls.client_kwargs() if self.tls is not None else {}
        return redis.Redis(
            host=host, port=port, username=USER, password=PASSWORD, decode_responses=decode_responses, **tls
        )

    def kill_primary(self) -> tuple[str, int]:
        """SIGKILL the current primary; its address."""
        node = self.current_primary()
        node.kill()
        return node.address

    def wait_promoted(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Wait until the sentinels name another primary than ``old`` and it says it is one."""
        found: list[tuple[str, int]] = []

        def promoted() -> bool:
            addr = self.primary_address()
            if addr is None or addr == old:
                return False
            with contextlib.suppress(redis.RedisError):
                if self.node_at(addr).admin().role()[0] in (b"master", "master"):
                    found.append(addr)
                    return True
            return False

        _until(
            promoted,
            timeout,
            lambda: "no replica was promoted:\n" + "\n".join(s.log() for s in self.sentinels),
        )
        return found[0]

    def failover(self, timeout: float = 30.0) -> tuple[str, int]:
        """Kill the primary and wait for the promotion; the new primary's address."""
        return self.wait_promoted(self.kill_primary(), timeout)

    def stop(self) -> None:
        for node in (*self.sentinels, *self.data_nodes):
            node.stop()


def _until(condition: Callable[[], bool], timeout: float, message: str | Callable[[], str]) -> None:
    """Poll ``condition`` until true (redis-server has no readiness signal to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message if isinstance(message, str) else message())
        time.sleep(0.05)


@pytest.fixture
def redis_topology(tmp_root: Path) -> Iterator[RedisTopology]:
    """A started primary + replica + three sentinels, stopped after the test."""
    topo = RedisTopology(tmp_root / "topology").start()
    try:
        yield topo
    finally:
        topo.stop()
