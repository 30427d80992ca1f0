"""Goal 2: WebSocket streaming against websocketd serving the same producer to the same client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.cases.stream import MIB, producer
from bench.daemon import BenchDaemon, tree_cpu_seconds
from bench.harness import GIB, Context, CpuMeter, fmt_bytes
from bench.report import Row
from bench.stats import interleave, median

__all__ = ["ws_lines", "ws_stream"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def websocketd(command: str, binary: bool) -> Iterator[tuple[str, int]]:
    """websocketd on a free loopback port running ``zsh -c command`` per connection; yields its URL and pid."""
    exe = shutil.which("websocketd")
    if exe is None:
        raise RuntimeError("websocketd is not installed (scripts/dev setup installs it)")
    port = _free_port()
    argv = [exe, f"--port={port}", "--address=127.0.0.1", "--loglevel=error"]
    if binary:
        argv.append("--binary")
    proc = subprocess.Popen(
        [*argv, "zsh", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("websocketd did not start") from None
                time.sleep(0.02)
        yield f"ws://127.0.0.1:{port}/", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def ws_stream(ctx: Context) -> list[Row]:
    """A 1 GiB text job over ``ws://`` (binary output frames) vs ``websocketd --binary``.

    ccxd is read the way its users read it, through ``ccxd.client``; websocketd,
    which has no client library, by the ``websockets`` library on the same
    event loop.  A second row reads ccxd with that same ``websockets`` client,
    so the servers alone are compared too.  Every run starts after ``sync``,
    so no run pays for writing back an earlier run's spool.
    """
    size = ctx.pick(1 << 30, 16 * MIB)
    runs = ctx.pick(ctx.runs, 2)
    cmd = producer(size)
    gib = size / GIB
    # Per row: the server's own process, and the whole pipeline (server, its children, the client).
    own = {k: CpuMeter(gib) for k in ("ccxd", "websocketd", "raw-ccxd", "raw-websocketd")}
    whole = {k: CpuMeter(gib) for k in own}

    def measure(name: str, target: str, secret: str, command: str, who: str, pid: int, key: str) -> float:
        # Dirty spool pages of an earlier run would be written back during this one.
        os.sync()
        tree0 = tree_cpu_seconds(pid)
        r = own[key].measure(pid, lambda: ctx.client(name, target, secret, command))
        whole[key].add(tree_cpu_seconds(pid) - tree0 + r["cpu_seconds"])
        if r["bytes"] != size:
            raise RuntimeError(f"{who} delivered {r['bytes']} of {size} bytes")
        return float(size / r["seconds"] / MIB)

    # One daemon per row: each row's ccxd runs alternate with websocketd's, and the
    # daemon holds no more finished 1 GiB jobs than the first row's did before.
    with websocketd(cmd, binary=True) as (peer_url, peer_pid):

        def via_websocketd(key: str) -> float:
            return measure("ws-stream", peer_url, "-", "-", "websocketd", peer_pid, key)

        with BenchDaemon(ctx.log_dir, name="ws-stream") as d:
            url, token = d.ws_url(), d.token
            res = interleave(
                runs,
                {
                    "ccxd": lambda: measure("ws-client", url, token, cmd, "ccxd", d.pid, "ccxd"),
                    "websocketd": lambda: via_websocketd("websocketd"),
                },
            )
        with BenchDaemon(ctx.log_dir, name="ws-stream-raw") as d:
            url, token = d.ws_url(), d.token
            raw_res = interleave(
                runs,
                {
                    "ccxd": lambda: measure("ws-stream", url, token, cmd, "ccxd", d.pid, "raw-ccxd"),
                    "websocketd": lambda: via_websocketd("raw-websocketd"),
                },
            )
    a, b = median(res["ccxd"]), median(res["websocketd"])
    raw, raw_peer = median(raw_res["ccxd"]), median(raw_res["websocketd"])
    return [
        Row(
            case="2a WebSocket stream",
            metric=f"{fmt_bytes(size)} text job via ccxd.client, binary frames",
            unit="MiB/s",
            value=a,
            peer="websocketd --binary",
            peer_value=b,
            ratio=a / b,
            ratio_label="×",
            goal=2.0,
            runs=runs,
            samples=res["ccxd"],
            peer_samples=res["websocketd"],
            cpu=own["ccxd"].median,
            peer_cpu=own["websocketd"].median,
            cpu_samples=own["ccxd"].samples,
            peer_cpu_samples=own["websocketd"].samples,
            note="ccxd: `ccxd.client` (job.start with subscribe + binary), counting each OutputChunk's "
            "characters and lines; websocketd: the Python `websockets` client on uvloop, counting payload "
            "bytes and lines; CPU: each server's own process",
            cpu_unit="s/GiB",
        ),
        Row(
            case="2a WebSocket stream",
            metric=f"{fmt_bytes(size)} text job, both read by the `websockets` library",
            unit="MiB/s",
            value=raw,
            peer="websocketd --binary",
            peer_value=raw_peer,
            ratio=raw / raw_peer,
            ratio_label="×",
            runs=runs,
            samples=raw_res["ccxd"],
            peer_samples=raw_res["websocketd"],
            cpu=own["raw-ccxd"].median,
            peer_cpu=own["raw-websocketd"].median,
            cpu_samples=own["raw-ccxd"].samples,
            peer_cpu_samples=own["raw-websocketd"].samples,
            note="the same client program for both (the servers compared alone), a daemon of its own; no goal",
            cpu_unit="s/GiB",
        ),
        Row(
            case="7 CPU per unit",
            metric="daemon CPU per GiB streamed to a binary WebSocket subscriber",
            unit="s/GiB",
            value=own["ccxd"].median,
            peer="websocketd's own process",
            peer_value=own["websocketd"].median,
            ratio=own["ccxd"].median / own["websocketd"].median,
            ratio_label="×",
            goal=1.5,
            higher_is_better=False,
            goal_on_value=True,
            runs=runs,
            samples=own["ccxd"].samples,
            peer_samples=own["websocketd"].samples,
            note="the daemon's own process (user + system, /proc/PID/stat), as in the row above",
        ),
        Row(
            case="7 CPU per unit",
            metric="whole pipeline's CPU per GiB to a binary WebSocket subscriber",
            unit="s/GiB",
            value=whole["ccxd"].median,
            peer="websocketd's pipeline",
            peer_value=whole["websocketd"].median,
            ratio=whole["ccxd"].median / whole["websocketd"].median,
            ratio_label="×",
            runs=runs,
            samples=whole["ccxd"].samples,
            peer_samples=whole["websocketd"].samples,
            note="the server, every process under it (ccxd: shims, the job, redis-server; websocketd: the job) "
            "and the client (`ccxd.client` / `websockets`); no goal (the issue's 2.9 s and 3.5 s were these)",
        ),
    ]


def ws_lines(ctx: Context) -> list[Row]:
    """Output in many short lines (``seq 1 N``) vs websocketd in its default line mode (a message per line)."""
    n = ctx.pick(1_000_000, 20_000)
    runs = ctx.pick(ctx.runs, 2)
    cmd = f"seq 1 {n}"
    per = n / 1e6
    cpu, peer_cpu = CpuMeter(per), CpuMeter(per)
    with (
        BenchDaemon(ctx.log_dir, name="ws-lines") as d,
        websocketd(cmd, binary=False) as (peer_url, peer_pid),
    ):
        url, token = d.ws_url(), d.token

        def via_ccxd() -> float:
            r = cpu.measure(d.pid, lambda: ctx.client("ws-stream", url, token, cmd))
            if r["lines"] != n:
                raise RuntimeError(f"ccxd delivered {r['lines']} of {n} lines")
            return float(n / r["seconds"])

        def via_websocketd() -> float:
            r = peer_cpu.measure(peer_pid, lambda: ctx.client("ws-stream", peer_url, "-", "-"))
            if r["lines"] != n:
                raise RuntimeError(f"websocketd delivered {r['lines']} of {n} lines")
            return float(n / r["seconds"])

        res = interleave(runs, {"ccxd": via_ccxd, "websocketd": via_websocketd})
    a, b = median(res["ccxd"]), median(res["websocketd"])
    return [
        Row(
            case="2b WebSocket lines",
            metric=f"`seq 1 {n:,}` (short lines)",
            unit="lines/s",
            value=a,
            peer="websocketd (line mode)",
            peer_value=b,
            ratio=a / b,
            ratio_label="×",
            goal=10.0,
            runs=runs,
            samples=res["ccxd"],
            peer_samples=res["websocketd"],
            cpu=cpu.median,
            peer_cpu=peer_cpu.median,
            cpu_unit="s/M lines",
            cpu_samples=cpu.samples,
            peer_cpu_samples=peer_cpu.samples,
            note="ccxd sends output in chunks (binary frames), websocketd one message per line",
        )
    ]
