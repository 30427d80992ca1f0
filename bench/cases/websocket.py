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
from bench.daemon import BenchDaemon
from bench.harness import Context, fmt_bytes
from bench.report import Row
from bench.stats import interleave, median

__all__ = ["ws_lines", "ws_stream"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def websocketd(command: str, binary: bool) -> Iterator[str]:
    """websocketd on a free loopback port running ``zsh -c command`` per connection; yields its URL."""
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
        yield f"ws://127.0.0.1:{port}/"
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

    def measure(name: str, target: str, secret: str, command: str, who: str) -> float:
        # Dirty spool pages of an earlier run would be written back during this one.
        os.sync()
        r = ctx.client(name, target, secret, command)
        if r["bytes"] != size:
            raise RuntimeError(f"{who} delivered {r['bytes']} of {size} bytes")
        return float(size / r["seconds"] / MIB)

    # One daemon per row: each row's ccxd runs alternate with websocketd's, and the
    # daemon holds no more finished 1 GiB jobs than the first row's did before.
    with websocketd(cmd, binary=True) as peer_url:

        def via_websocketd() -> float:
            return measure("ws-stream", peer_url, "-", "-", "websocketd")

        with BenchDaemon(ctx.log_dir, name="ws-stream") as d:
            url, token = d.ws_url(), d.token
            res = interleave(
                runs,
                {"ccxd": lambda: measure("ws-client", url, token, cmd, "ccxd"), "websocketd": via_websocketd},
            )
        with BenchDaemon(ctx.log_dir, name="ws-stream-raw") as d:
            url, token = d.ws_url(), d.token
            raw_res = interleave(
                runs,
                {"ccxd": lambda: measure("ws-stream", url, token, cmd, "ccxd"), "websocketd": via_websocketd},
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
            goal=1.5,
            runs=runs,
            samples=res["ccxd"],
            peer_samples=res["websocketd"],
            note="ccxd: `ccxd.client` (job.start with subscribe + binary), counting each OutputChunk's "
            "characters and lines; websocketd: the Python `websockets` client on uvloop, counting payload "
            "bytes and lines",
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
            note="the same client program for both (the servers compared alone), a daemon of its own; no goal",
        ),
    ]


def ws_lines(ctx: Context) -> list[Row]:
    """Output in many short lines (``seq 1 N``) vs websocketd in its default line mode (a message per line)."""
    n = ctx.pick(1_000_000, 20_000)
    runs = ctx.pick(ctx.runs, 2)
    cmd = f"seq 1 {n}"
    with BenchDaemon(ctx.log_dir, name="ws-lines") as d, websocketd(cmd, binary=False) as peer_url:
        url, token = d.ws_url(), d.token

        def via_ccxd() -> float:
            r = ctx.client("ws-stream", url, token, cmd)
            if r["lines"] != n:
                raise RuntimeError(f"ccxd delivered {r['lines']} of {n} lines")
            return float(n / r["seconds"])

        def via_websocketd() -> float:
            r = ctx.client("ws-stream", peer_url, "-", "-")
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
            note="ccxd sends output in chunks (binary frames), websocketd one message per line",
        )
    ]
