"""Goal 1 (Unix-socket streaming vs a raw pipe) and issue 3's persistence cost (Redis vs memory store)."""

from __future__ import annotations

from bench.daemon import BenchDaemon
from bench.harness import Context, fmt_bytes
from bench.report import Row
from bench.stats import interleave, median

__all__ = ["persistence_cost", "producer", "unix_stream"]

LINE = "ccxd benchmark line: the quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv"
"""99 characters; with its newline a 100-byte line of plain text."""

MIB = 1 << 20


def producer(size: int) -> str:
    """A shell command writing ``size`` bytes of text lines as fast as it can."""
    return f"yes '{LINE}' | head -c {size}"


def unix_stream(ctx: Context) -> list[Row]:
    """A job writing 1 GiB of text, read through ``ccxd.client`` vs ``producer | cat >/dev/null``."""
    size = ctx.pick(1 << 30, 16 * MIB)
    runs = ctx.pick(ctx.runs, 2)
    cmd = producer(size)
    with BenchDaemon(ctx.log_dir, name="unix-stream") as d:
        env = d.client_env

        def via_ccxd() -> float:
            r = ctx.client("unix-stream", str(d.socket), cmd, env=env)
            if r["bytes"] != size:
                raise RuntimeError(f"ccxd delivered {r['bytes']} of {size} bytes")
            return float(size / r["seconds"] / MIB)

        def via_pipe() -> float:
            return float(size / ctx.timed(["zsh", "-c", f"{cmd} | cat >/dev/null"]) / MIB)

        res = interleave(runs, {"ccxd": via_ccxd, "pipe": via_pipe})
    a, b = median(res["ccxd"]), median(res["pipe"])
    return [
        Row(
            case="1 Unix stream",
            metric=f"{fmt_bytes(size)} text job via ccxd.client",
            unit="MiB/s",
            value=a,
            peer="`producer | cat >/dev/null`",
            peer_value=b,
            ratio=a / b,
            ratio_label="of pipe",
            goal=0.30,
            runs=runs,
            samples=res["ccxd"],
            peer_samples=res["pipe"],
            note=f"producer: `{producer(size)[:40]}…` (100-byte lines); default config (Redis persists the "
            "first store_output_max_bytes = 64 MiB; the spool keeps all)",
        )
    ]


def persistence_cost(ctx: Context) -> list[Row]:
    """Streaming throughput with every byte persisted to Redis vs ``store = "memory"`` (issue 3)."""
    size = ctx.pick(256 * MIB, 8 * MIB)
    runs = ctx.pick(ctx.runs, 2)
    cmd = producer(size)
    persist = {"store_output_max_bytes": str(2 * size)}
    with (
        BenchDaemon(ctx.log_dir, persist, name="persist-redis") as on,
        BenchDaemon(ctx.log_dir, {**persist, "store": "memory"}, name="persist-memory") as off,
    ):

        def run(d: BenchDaemon) -> float:
            r = ctx.client("unix-stream", str(d.socket), cmd, env=d.client_env)
            if r["bytes"] != size:
                raise RuntimeError(f"ccxd delivered {r['bytes']} of {size} bytes")
            return float(size / r["seconds"] / MIB)

        res = interleave(runs, {"redis": lambda: run(on), "memory": lambda: run(off)})
    a, b = median(res["redis"]), median(res["memory"])
    return [
        Row(
            case="7b Persistence cost",
            metric=f"{fmt_bytes(size)} stream, all output to Redis",
            unit="MiB/s",
            value=a,
            peer='same with `store = "memory"`',
            peer_value=b,
            ratio=1 - a / b,
            ratio_label="slower",
            goal=0.10,
            higher_is_better=False,
            runs=runs,
            samples=res["redis"],
            peer_samples=res["memory"],
            note="embedded redis-server (append-only file on), store_output_max_bytes raised so every byte is stored",
        )
    ]
