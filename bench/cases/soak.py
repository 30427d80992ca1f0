"""Issue 10's soak: mixed load for ``--soak-minutes``; RSS growth after warm-up, fds, lost records."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from bench.daemon import BenchDaemon, proc_fd_targets, proc_fds, proc_rss_kib
from bench.harness import Context
from bench.report import Row
from bench.stats import median
from ccxd.proc.tree import children_of

__all__ = ["soak"]


def _kind(target: str) -> str:
    """``socket:[123]`` → ``socket``; paths are kept."""
    return target.split(":[", 1)[0] if ":[" in target else target


def _redis_child(pid: int) -> int | None:
    """The daemon's embedded redis-server."""
    for child in children_of(pid) or ():
        try:
            with open(f"/proc/{child}/comm") as f:
                if f.read().strip() == "redis-server":
                    return child
        except OSError:
            continue
    return None


def soak(ctx: Context) -> list[Row]:
    """Run the soak client while sampling the daemon's RSS and fds; kill its Redis now and then."""
    # The outside edge is faked: the Anthropic API (the real claude CLI runs against it).
    from tests.claude.cli import claude_env, pinned_cli
    from tests.claude.fake_api import FakeApi

    seconds = ctx.soak_minutes * 60
    interval = 10.0 if seconds >= 600 else max(0.5, seconds / 60)
    redis_every = seconds / 6  # five Redis deaths in a run, the daemon restarts its own
    home = Path(tempfile.mkdtemp(prefix="ccxd-soak-home-"))
    api = FakeApi().start()
    settings = {
        "claude_program": pinned_cli(),
        "claude_retry": "false",
        "history_max_jobs": "100000000",  # retention must not pass for loss
    }
    try:
        with BenchDaemon(ctx.log_dir, settings, name="soak") as d:
            rows = _soak(ctx, d, seconds, interval, redis_every, claude_env(api, home))
    finally:
        api.stop()
        shutil.rmtree(home, ignore_errors=True)
    return rows


def _soak(
    ctx: Context,
    d: BenchDaemon,
    seconds: float,
    interval: float,
    redis_every: float,
    claude_env: dict[str, str],
) -> list[Row]:
    url, token = d.ws_url(), d.token
    redis_url = f"unix://{d.runtime / 'ccxd' / 'redis.sock'}"  # the embedded redis-server
    ctx.client("ws-stream", url, token, "echo warm")
    time.sleep(1)
    base = proc_fd_targets(d.pid)
    base_fds = len(base)
    client = ctx.spawn_client(
        "soak", str(d.socket), url, token, str(seconds), redis_url, json.dumps(claude_env), env=d.client_env
    )
    samples: list[tuple[float, int, int]] = []
    t0 = time.monotonic()
    redis_kills = 0
    next_kill = redis_every / 2
    while client.poll() is None:
        now = time.monotonic() - t0
        samples.append((now, proc_rss_kib(d.pid), proc_fds(d.pid)))
        if now >= next_kill and now < seconds:
            redis = _redis_child(d.pid)
            if redis is not None:
                os.kill(redis, signal.SIGKILL)
                redis_kills += 1
            next_kill += redis_every
        time.sleep(min(interval, max(0.1, next_kill - now)))
    out, err = client.communicate()
    if client.returncode != 0:
        (ctx.out / "soak-samples.json").write_text(json.dumps({"samples": samples, "result": None}))
        raise RuntimeError(f"soak client failed: {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    deadline = time.monotonic() + 30
    while proc_fds(d.pid) > base_fds and time.monotonic() < deadline:
        time.sleep(0.2)
    end = proc_fd_targets(d.pid)
    end_fds = len(end)
    before_kinds = collections.Counter(_kind(t) for t in base.values())
    after_kinds = collections.Counter(_kind(t) for t in end.values())
    extra = sorted(
        f"{kind} {after_kinds[kind] - before_kinds[kind]:+d}"
        for kind in before_kinds | after_kinds
        if after_kinds[kind] != before_kinds[kind]
    )
    (ctx.out / "soak-samples.json").write_text(json.dumps({"samples": samples, "result": result}))
    # Warm-up: the first fifth of the run (caches, the store's connection pool, the page cache).
    warm = [s for s in samples if s[0] <= seconds / 5] or samples[:1]
    steady = [s for s in samples if s[0] > seconds / 5]
    after_warm = median([s[1] for s in warm[-3:]])
    at_end = median([s[1] for s in steady[-3:]]) if steady else after_warm
    growth = (at_end - after_warm) / after_warm * 100
    minutes = f"{ctx.soak_minutes:g} min"
    problems = "; ".join(result["problems"]) if result["problems"] else ""
    return [
        Row(
            case="Soak",
            metric=f"RSS growth after warm-up ({minutes} mixed load)",
            unit="%",
            value=growth,
            peer="RSS right after warm-up (MiB)",
            peer_value=after_warm / 1024,
            ratio=at_end / after_warm,
            ratio_label="×",
            goal=5.0,
            higher_is_better=False,
            goal_on_value=True,
            runs=len(samples),
            samples=[s[1] / 1024 for s in samples],
            note=f"{result['jobs']:,} jobs: `seq` jobs ×4 in parallel, 4 MiB WebSocket streams, failing and "
            f"cancelled jobs, {result['claude_jobs']:,} Claude jobs (real CLI, fake API), "
            f"{result['attaches']:,} detach/re-attach follows; the embedded Redis SIGKILLed {redis_kills}× "
            f"(restarted by the daemon); RSS sampled every {interval:g} s (samples in soak-samples.json)",
        ),
        Row(
            case="Soak",
            metric="file descriptors after the load",
            unit="fds",
            value=end_fds,
            peer="before the load",
            peer_value=base_fds,
            ratio=end_fds - base_fds,
            ratio_label="extra",
            goal=0,
            higher_is_better=False,
            note=f"max while loaded {max((s[2] for s in samples), default=0)}"
            + (f"; changed at the end: {', '.join(extra)}" if extra else ""),
        ),
        Row(
            case="Soak",
            metric="jobs missing or wrong in the store",
            unit="jobs",
            value=result["lost"],
            peer="jobs run",
            peer_value=result["jobs"],
            ratio=result["lost"],
            ratio_label="lost",
            goal=0,
            higher_is_better=False,
            note=("client-side problems: " + problems) if problems else "",
        ),
    ]
