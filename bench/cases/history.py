"""Issue 3 / goal 7: the newest 50 of 1,000,000 stored jobs."""

from __future__ import annotations

import time
from typing import Any

from bench.daemon import BenchDaemon, RedisServer
from bench.harness import Context
from bench.report import Row
from bench.stats import median

__all__ = ["history", "populate"]

NODE = "bench"


class _RespPipe:
    """Stands in for a redis-py pipeline: records the store's own commands as raw RESP.

    ``RedisStore._save_job`` decides every key and command (nothing here knows
    key names); this only encodes them, so a million jobs load in seconds
    instead of the minutes redis-py's per-command Python costs.
    """

    def __init__(self) -> None:
        self.out = bytearray()
        self.count = 0

    def _cmd(self, *args: object) -> None:
        self.out += b"*%d\r\n" % len(args)
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            self.out += b"$%d\r\n%s\r\n" % (len(b), b)
        self.count += 1

    def set(self, name: str, value: bytes) -> None:
        self._cmd(b"SET", name, value)

    def hset(self, name: str, key: str, value: object) -> None:
        self._cmd(b"HSET", name, key, value)

    def hsetnx(self, name: str, key: str, value: object) -> None:
        self._cmd(b"HSETNX", name, key, value)

    def zadd(self, name: str, mapping: dict[str, float], gt: bool = False) -> None:
        args: list[object] = [b"ZADD", name]
        if gt:
            args.append(b"GT")
        for member, score in mapping.items():
            args += [repr(float(score)), member]
        self._cmd(*args)

    def sadd(self, name: str, *values: str) -> None:
        self._cmd(b"SADD", name, *values)

    def srem(self, name: str, *values: str) -> None:
        self._cmd(b"SREM", name, *values)


def _job(i: int, count: int, now: float) -> Any:
    from ccxd.protocol import JobInfo, JobReason, JobState

    queued = now - (count - i) * 0.5
    return JobInfo(
        id=f"h{i:09d}",
        state=JobState.FINISHED,
        command=f"make test SHARD={i % 97}",
        shell="/usr/bin/zsh",
        cwd="/home/user/src/app",
        reason=JobReason.EXITED,
        exit_code=0,
        queued_at=queued,
        started_at=queued + 0.001,
        finished_at=queued + 0.2,
        duration=0.199,
        stdout_bytes=1200,
        output_bytes=1200,
        node=NODE,
        peer="uid=0 pid=1",
    )


def populate(socket_path: str, count: int, batch: int = 20_000) -> float:
    """Store ``count`` finished jobs with the store's own write code, pipelined raw; return seconds."""
    import socket

    from ccxd.store.redis_store import RedisStore

    store = RedisStore(f"unix://{socket_path}", NODE)
    store._scripts = False  # the plain commands (the same keys; a test compares them): no script to load here
    now = time.time()
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        for start in range(0, count, batch):
            pipe = _RespPipe()
            for i in range(start, min(start + batch, count)):
                store._save_job(pipe, _job(i, count, now))
            send_pipe(sock, pipe)
    return time.perf_counter() - t0


def send_pipe(sock: Any, pipe: _RespPipe) -> None:
    """Send a pipeline and read its replies (one line each), failing on an error reply."""
    sock.sendall(pipe.out)
    seen, tail = 0, b""
    while seen < pipe.count:
        data = sock.recv(1 << 20)
        if not data:
            raise RuntimeError("redis closed the connection while loading")
        joined = tail + data
        if b"\n-" in b"\n" + joined:
            raise RuntimeError(f"redis refused a write: {joined[:200]!r}")
        seen += joined.count(b"\r\n")
        tail = joined[-1:]


def history(ctx: Context) -> list[Row]:
    """``history.list`` (newest 50) through the daemon vs the same query straight from Redis."""
    count = ctx.pick(1_000_000, 5_000)
    calls = ctx.pick(50, 5)
    with RedisServer() as redis:
        seconds = populate(str(redis.socket), count)
        ctx.log(f"stored {count:,} jobs in {seconds:.1f}s")
        settings = {"redis_url": redis.url, "node_id": NODE, "history_max_jobs": "none"}
        with BenchDaemon(ctx.log_dir, settings, name="history") as d:
            r = ctx.client("history-list", str(d.socket), redis.url, str(calls), "50", env=d.client_env)
    if r["returned"] != 50:
        raise RuntimeError(f"history.list returned {r['returned']} jobs, expected 50")
    a, b = median(r["ccxd_ms"]), median(r["direct_ms"])
    return [
        Row(
            case="7a History",
            metric=f"newest 50 of {count:,} stored jobs (`history.list`)",
            unit="ms",
            value=a,
            peer="same query straight to Redis (ccxd's store code, no daemon)",
            peer_value=b,
            ratio=a / b,
            ratio_label="×",
            goal=50.0,
            higher_is_better=False,
            goal_on_value=True,
            runs=calls,
            samples=r["ccxd_ms"],
            peer_samples=r["direct_ms"],
            note=f"loaded with RedisStore's own write code (raw pipelined RESP) in {seconds:.0f} s ({count / seconds:,.0f} jobs/s); "
            "calls alternate daemon / direct",
        )
    ]
