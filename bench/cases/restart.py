"""Issue 25: a daemon killed with a big store is back (``ready``, store healthy) within seconds."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from bench.cases.history import _job, _RespPipe, send_pipe
from bench.daemon import BenchDaemon
from bench.harness import Context
from bench.report import Row
from bench.stats import median

__all__ = ["populate_big", "restart"]

_SEQ = b"".join(b"%d\n" % i for i in range(1, 2001))
_STREAM_CHUNK = (b"soak stream line 0123456789\n" * 2400)[:65536]


class _Pipe(_RespPipe):
    """:class:`_RespPipe` with the command output chunks are stored by."""

    def xadd(self, name: str, fields: dict[str, Any], id: str) -> None:  # redis-py's signature
        args: list[object] = [b"XADD", name, id]
        for k, v in fields.items():
            args += [k, v]
        self._cmd(*args)


def populate_big(socket_path: str, node: str, jobs: int, streams: int) -> float:
    """Store what a long soak leaves: ``jobs`` finished ``seq`` jobs (0–8 KB output each) and
    ``streams`` 4 MiB outputs, with the store's own write code; return seconds."""
    from ccxd.store.ops import AppendOutput
    from ccxd.store.redis_store import RedisStore

    store = RedisStore(f"unix://{socket_path}", node)
    store._scripts = False  # plain commands, the same keys: no script to load here
    now = time.time()
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        for start in range(0, jobs, 2000):
            pipe = _Pipe()
            for i in range(start, min(start + 2000, jobs)):
                info = _job(i, jobs, now)
                info.node = node
                store._save_job(pipe, info)
                data = _SEQ[: (i * 7919) % 2000 * 4]
                if data:
                    store._queue(pipe, AppendOutput(info.id, 0, 0, 0, data))
            send_pipe(sock, pipe)
        for j in range(streams):
            pipe = _Pipe()
            for c in range(64):
                store._queue(pipe, AppendOutput(f"s{j:06d}", c, 0, c * len(_STREAM_CHUNK), _STREAM_CHUNK))
            send_pipe(sock, pipe)
    return time.perf_counter() - t0


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _healthy(d: BenchDaemon, timeout: float) -> float:
    """Seconds until ``daemon.status`` says the store is the embedded Redis with nothing pending."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while True:
        store = str(d.status()["store"])
        if store == "redis (embedded)":
            return time.perf_counter() - t0
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the store was not healthy within {timeout:.0f} s: {store}")
        time.sleep(0.02)


def restart(ctx: Context) -> list[Row]:
    """Fill the embedded store, kill -9 the daemon and its redis-server, time the next start."""
    jobs = ctx.pick(200_000, 2_000)
    streams = ctx.pick(300, 2)
    runs = ctx.pick(ctx.runs, 1)
    node = "bench"
    d = BenchDaemon(ctx.log_dir, {"node_id": node, "history_max_jobs": "none"}, name="restart")
    ready: list[float] = []
    healthy: list[float] = []
    try:
        d.start()
        redis_socket = d.socket.parent / "redis.sock"
        seconds = populate_big(str(redis_socket), node, jobs, streams)
        ctx.log(f"stored {jobs:,} jobs and {streams} × 4 MiB in {seconds:.1f}s")
        time.sleep(2)  # past appendfsync everysec: what a soak had stored is on disk
        data_dir = d.tmp / "state" / "ccxd" / "redis"
        on_disk = _dir_bytes(data_dir)
        for _ in range(runs):
            d.kill()
            t0 = time.perf_counter()
            d.start(timeout=900)
            ready.append(time.perf_counter() - t0)
            healthy.append(ready[-1] + _healthy(d, 900))
            time.sleep(1)
    finally:
        d.stop()
    a, b = median(healthy), median(ready)
    return [
        Row(
            case="8 Restart",
            metric=f"kill -9, then start to `ready` with the store healthy, {on_disk / (1 << 20):,.0f} MiB store",
            unit="s",
            value=a,
            peer="start to READY=1",
            peer_value=b,
            ratio=a / 5.0,
            ratio_label="of the limit",
            goal=5.0,
            higher_is_better=False,
            goal_on_value=True,
            runs=runs,
            samples=healthy,
            peer_samples=ready,
            note=f"the embedded redis-server's files: {on_disk / (1 << 20):,.0f} MiB after {jobs:,} finished jobs "
            f"(0–8 KB of output each) and {streams} × 4 MiB outputs, written with the store's own code; "
            "the daemon and its redis-server are SIGKILLed, then the daemon is started on the same files",
        )
    ]
