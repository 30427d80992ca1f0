"""Goal 1 (Unix-socket streaming vs a raw pipe) and issue 3's persistence cost (Redis vs memory store)."""

from __future__ import annotations

from bench.daemon import BenchDaemon
from bench.harness import GIB, Context, CpuMeter, fmt_bytes, timed_pipe
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
    """A job writing 1 GiB of text, read through ``ccxd.client`` vs ``producer | cat`` and ``/dev/zero | cat``."""
    size = ctx.pick(1 << 30, 16 * MIB)
    runs = ctx.pick(ctx.runs, 2)
    cmd = producer(size)
    zero = f"head -c {size} /dev/zero"
    gib = size / GIB
    cpu, client_cpu = CpuMeter(gib), CpuMeter(gib)
    cat_cpu, zero_cpu = CpuMeter(gib), CpuMeter(gib)
    with BenchDaemon(ctx.log_dir, name="unix-stream") as d:
        env = d.client_env

        def via_ccxd() -> float:
            r = cpu.measure(d.pid, lambda: ctx.client("unix-stream", str(d.socket), cmd, env=env))
            if r["bytes"] != size:
                raise RuntimeError(f"ccxd delivered {r['bytes']} of {size} bytes")
            client_cpu.add(r["cpu_seconds"])
            return float(size / r["seconds"] / MIB)

        def via_pipe() -> float:
            seconds, cat = timed_pipe(cmd)
            cat_cpu.add(cat)
            return float(size / seconds / MIB)

        def via_zero() -> float:
            seconds, cat = timed_pipe(zero)
            zero_cpu.add(cat)
            return float(size / seconds / MIB)

        res = interleave(runs, {"ccxd": via_ccxd, "pipe": via_pipe, "zero": via_zero})
    a, b, z = median(res["ccxd"]), median(res["pipe"]), median(res["zero"])
    common = {
        "case": "1 Unix stream",
        "metric": f"{fmt_bytes(size)} text job via ccxd.client",
        "unit": "MiB/s",
        "value": a,
        "runs": runs,
        "samples": res["ccxd"],
        "cpu": cpu.median,
        "cpu_unit": "s/GiB",
        "cpu_samples": cpu.samples,
    }
    return [
        Row(
            peer="`producer | cat >/dev/null`",
            peer_value=b,
            ratio=a / b,
            ratio_label="of pipe",
            goal=0.60,
            peer_samples=res["pipe"],
            peer_cpu=cat_cpu.median,
            peer_cpu_samples=cat_cpu.samples,
            note=f"producer: `{producer(size)[:40]}…` (100-byte lines); default config (Redis persists the "
            "first store_output_max_bytes = 64 MiB; the spool keeps all); the client's own CPU "
            f"{client_cpu.median:.2f} s/GiB; CPU peer: cat",
            **common,
        ),
        Row(
            peer=f"`{zero} | cat >/dev/null`",
            peer_value=z,
            ratio=a / z,
            ratio_label="of /dev/zero",
            goal=0.25,
            peer_samples=res["zero"],
            peer_cpu=zero_cpu.median,
            peer_cpu_samples=zero_cpu.samples,
            note="the physical limit of a pipe on this machine (no producer work); CPU peer: cat",
            **common,
        ),
        Row(
            case="7 CPU per unit",
            metric="daemon CPU per GiB streamed to a Unix subscriber",
            unit="s/GiB",
            value=cpu.median,
            peer="cat reading the same producer",
            peer_value=cat_cpu.median,
            ratio=cpu.median / cat_cpu.median if cat_cpu.median else float("nan"),
            ratio_label="×",
            goal=1.0,
            higher_is_better=False,
            goal_on_value=True,
            runs=runs,
            samples=cpu.samples,
            peer_samples=cat_cpu.samples,
            note="the daemon's own process (/proc/PID/stat user + system before and after each round), "
            "not its shims or redis-server",
        ),
    ]


def persistence_cost(ctx: Context) -> list[Row]:
    """Streaming throughput with every byte persisted to Redis vs ``store = "memory"`` (issue 3)."""
    size = ctx.pick(256 * MIB, 8 * MIB)
    runs = ctx.pick(ctx.runs, 2)
    cmd = producer(size)
    persist = {"store_output_max_bytes": str(2 * size)}
    meters = {"redis": CpuMeter(size / GIB), "memory": CpuMeter(size / GIB)}
    with (
        BenchDaemon(ctx.log_dir, persist, name="persist-redis") as on,
        BenchDaemon(ctx.log_dir, {**persist, "store": "memory"}, name="persist-memory") as off,
    ):

        def run(d: BenchDaemon, meter: CpuMeter) -> float:
            r = meter.measure(d.pid, lambda: ctx.client("unix-stream", str(d.socket), cmd, env=d.client_env))
            if r["bytes"] != size:
                raise RuntimeError(f"ccxd delivered {r['bytes']} of {size} bytes")
            return float(size / r["seconds"] / MIB)

        res = interleave(
            runs, {"redis": lambda: run(on, meters["redis"]), "memory": lambda: run(off, meters["memory"])}
        )
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
            rounds=[1 - x / y for x, y in zip(res["redis"], res["memory"], strict=True)],
            cpu=meters["redis"].median,
            peer_cpu=meters["memory"].median,
            cpu_unit="s/GiB",
            cpu_samples=meters["redis"].samples,
            peer_cpu_samples=meters["memory"].samples,
            note="CPU: both columns are the daemon's own process; embedded redis-server (append-only file on), store_output_max_bytes raised so every byte is stored",
        )
    ]
