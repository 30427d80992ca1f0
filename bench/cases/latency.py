"""Goal 5: live output latency on the Unix socket while 100 other jobs stream."""

from __future__ import annotations

from bench.daemon import BenchDaemon
from bench.harness import Context, finish_client, read_json_line
from bench.report import Row
from bench.stats import interleave, median, percentile

__all__ = ["latency"]

BACKGROUND = (
    "zmodload zsh/zselect; "
    "while :; do print -r -- 'background job line: the quick brown fox jumps over the lazy dog 0123456789'; "
    "zselect -t 5; done"
)
"""A job writing a 100-byte line every 50 ms, without forking (zselect is a zsh builtin)."""


def latency(ctx: Context) -> list[Row]:
    """From a job's write to the client's receipt (ms), through ccxd vs straight from a pipe."""
    lines = ctx.pick(1000, 50)
    interval = "0.005"
    background = ctx.pick(100, 10)
    runs = ctx.pick(ctx.runs, 2)
    # Room for every background job and the probe at once (they would queue behind each other).
    with BenchDaemon(ctx.log_dir, {"max_concurrent_jobs": str(background + 10)}, name="latency") as d:
        env = d.client_env
        bg = ctx.spawn_client("background", str(d.socket), str(background), BACKGROUND, env=env)
        try:
            read_json_line(bg, 60)

            def ccxd() -> list[float]:
                r = ctx.client("latency-ccxd", str(d.socket), str(lines), interval, env=env)
                return list(r["latencies_ms"])

            def pipe() -> list[float]:
                r = ctx.client("latency-pipe", str(lines), interval)
                return list(r["latencies_ms"])

            res = interleave(runs, {"ccxd": ccxd, "pipe": pipe})
        finally:
            bg_result = finish_client(bg)
    rows = []
    for p, goal in ((50.0, 1.0), (99.0, 1.0), (99.9, None)):
        a_runs = [percentile(r, p) for r in res["ccxd"]]
        b_runs = [percentile(r, p) for r in res["pipe"]]
        a, b = median(a_runs), median(b_runs)
        rows.append(
            Row(
                case="5 Live latency",
                metric=f"p{p:g}, write → client, {background} other jobs streaming",
                unit="ms",
                value=a,
                peer="same probe read from a pipe",
                peer_value=b,
                ratio=a / b if b else float("nan"),
                ratio_label="×",
                goal=goal,
                higher_is_better=False,
                goal_on_value=True,
                runs=runs,
                samples=a_runs,
                peer_samples=b_runs,
                note=(
                    f"probe: a Python job writing its CLOCK_MONOTONIC every {interval} s, {lines} lines a run; "
                    f"background: {background} jobs × a 100-byte line every 50 ms, each followed by a client "
                    f"({bg_result['bytes'] / 1e6:.1f} MB delivered); the pipe baseline runs under the same load"
                )
                if p == 50
                else "",
            )
        )
    return rows
