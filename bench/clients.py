"""Client programs the cases run as separate processes: ``python -m bench.clients NAME ARGS…``.

Each prints one JSON object on stdout.  They run in their own process so the
harness's own work never competes with the client being measured; ccxd's
clients and the peers' clients use the same event loop (uvloop) and, for
WebSocket, the same library (``websockets``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

__all__ = ["main"]

Handler = Callable[[list[str]], Coroutine[Any, Any, dict[str, Any]]]


def _now() -> float:
    return time.perf_counter()


# -- streaming ---------------------------------------------------------------


async def unix_stream(args: list[str]) -> dict[str, Any]:
    """``unix-stream SOCKET COMMAND``: run a job through the client library and count its output."""
    from ccxd.client import connect
    from ccxd.protocol import JobFinished, OutputChunk

    sock, command = args
    client = await connect(sock)
    received = 0
    t0, c0 = _now(), time.process_time()
    finished = None
    async for ev in client.run(command, timeout=0):
        if isinstance(ev, OutputChunk):
            received += len(ev.data)  # text output: characters == bytes (ASCII)
        elif isinstance(ev, JobFinished):
            finished = ev.job
    seconds = _now() - t0
    await client.close()
    assert finished is not None
    cpu = time.process_time() - c0
    return {"bytes": received, "seconds": seconds, "job_bytes": finished.output_bytes, "cpu_seconds": cpu}


async def ws_stream(args: list[str]) -> dict[str, Any]:
    """``ws-stream URL TOKEN COMMAND``: one WebSocket; count bytes and lines until the stream ends.

    With a COMMAND (ccxd) the client sends ``job.start`` with binary output and
    stops at ``job.finished``; with ``-`` (websocketd) it reads until the close.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    url, token, command = args
    headers = {"Authorization": f"Bearer {token}"} if token != "-" else None
    received = lines = messages = 0
    t0, c0 = _now(), time.process_time()
    async with connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
        if command != "-":
            start = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "job.start",
                "params": {"command": command, "subscribe": True, "binary": True, "timeout": 0},
            }
            await ws.send(json.dumps(start))
        try:
            async for frame in ws:
                messages += 1
                if isinstance(frame, bytes):
                    if command != "-":
                        # Skip the binary frame's header (see ccxd.protocol.encode_output_frame).
                        head = 20 + int.from_bytes(frame[18:20], "little")
                        received += len(frame) - head
                        lines += frame.count(b"\n", head)
                    else:
                        received += len(frame)
                        lines += frame.count(b"\n")
                elif command == "-":
                    received += len(frame) + 1  # websocketd line mode drops the newline
                    lines += 1
                elif '"job.finished"' in frame:
                    break
        except ConnectionClosed:
            pass
    seconds, cpu = _now() - t0, time.process_time() - c0
    return {"bytes": received, "lines": lines, "messages": messages, "seconds": seconds, "cpu_seconds": cpu}


async def ws_client(args: list[str]) -> dict[str, Any]:
    """``ws-client URL TOKEN COMMAND``: run a job through ``ccxd.client`` over ``ws://``, binary output.

    Counts what a user of the library gets: each ``OutputChunk``'s text and its lines.
    """
    from ccxd.client import connect
    from ccxd.protocol import JobFinished, OutputChunk

    url, token, command = args
    t0, c0 = _now(), time.process_time()
    client = await connect(url, token=token, reconnect=False)
    received = lines = messages = 0
    finished = None
    async for ev in client.run(command, timeout=0, binary=True):
        if isinstance(ev, OutputChunk):
            messages += 1
            received += len(ev.data)  # text output: characters == bytes (ASCII)
            lines += ev.data.count("\n")
        elif isinstance(ev, JobFinished):
            finished = ev.job
    seconds, cpu = _now() - t0, time.process_time() - c0
    await client.close()
    assert finished is not None
    return {"bytes": received, "lines": lines, "messages": messages, "seconds": seconds, "cpu_seconds": cpu}


# -- job throughput ------------------------------------------------------------


async def jobs_ccxd(args: list[str]) -> dict[str, Any]:
    """``jobs-ccxd SOCKET N CONCURRENCY COMMAND``: run N jobs through the client library."""
    from ccxd.client import connect
    from ccxd.protocol import JobFinished

    sock, n, conc, command = args[0], int(args[1]), int(args[2]), args[3]
    client = await connect(sock)
    remaining = n
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            async for ev in client.run(command, timeout=0):
                if isinstance(ev, JobFinished) and ev.job.exit_code != 0:
                    failures += 1

    t0, c0 = _now(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(conc)))
    seconds, cpu = _now() - t0, time.process_time() - c0
    await client.close()
    return {"jobs": n, "seconds": seconds, "failures": failures, "cpu_seconds": cpu}


async def jobs_asyncio(args: list[str]) -> dict[str, Any]:
    """``jobs-asyncio N CONCURRENCY ARGV…``: the same jobs with bare create_subprocess_exec."""
    n, conc, argv = int(args[0]), int(args[1]), args[2:]
    remaining = n
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await proc.communicate()
            if proc.returncode != 0:
                failures += 1

    t0, c0 = _now(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(conc)))
    # Its own process only (the loop, the pipes' reading, the spawning), not the jobs': as the daemon's.
    seconds, cpu = _now() - t0, time.process_time() - c0
    return {"jobs": n, "seconds": seconds, "failures": failures, "cpu_seconds": cpu}


# -- latency -----------------------------------------------------------------

PROBE = (
    "import sys,time\n"
    "n,iv=int(sys.argv[1]),float(sys.argv[2])\n"
    "w=sys.stdout.write;f=sys.stdout.flush;c=time.clock_gettime_ns;M=time.CLOCK_MONOTONIC\n"
    "for _ in range(n):\n"
    "    w(f'{c(M)}\\n');f();time.sleep(iv)\n"
)
"""A job that writes its CLOCK_MONOTONIC time (ns) on a line, every ``iv`` seconds."""


def _latencies(text: str, now_ns: int, out: list[float]) -> None:
    for line in text.split("\n"):
        if line:
            out.append((now_ns - int(line)) / 1e6)


async def latency_ccxd(args: list[str]) -> dict[str, Any]:
    """``latency-ccxd SOCKET N INTERVAL``: the probe as a job; latency from its write to our receipt (ms)."""
    from ccxd.client import connect
    from ccxd.protocol import OutputChunk

    sock, n, interval = args[0], args[1], args[2]
    client = await connect(sock)
    lat: list[float] = []
    async for ev in client.run([sys.executable, "-c", PROBE, n, interval], timeout=0):
        if isinstance(ev, OutputChunk) and ev.stream == "stdout":
            _latencies(ev.data, time.clock_gettime_ns(time.CLOCK_MONOTONIC), lat)
    await client.close()
    return {"latencies_ms": lat}


async def latency_pipe(args: list[str]) -> dict[str, Any]:
    """``latency-pipe N INTERVAL``: the same probe read straight from a pipe (the physical limit)."""
    n, interval = args
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, n, interval, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    lat: list[float] = []
    while True:
        data = await proc.stdout.read(65536)
        if not data:
            break
        _latencies(data.decode(), time.clock_gettime_ns(time.CLOCK_MONOTONIC), lat)
    await proc.wait()
    return {"latencies_ms": lat}


async def background_streams(args: list[str]) -> dict[str, Any]:
    """``background SOCKET N COMMAND``: start N jobs, follow them all, until stdin closes; then cancel them."""
    from ccxd.client import connect

    sock, n, command = args[0], int(args[1]), args[2]
    client = await connect(sock)
    received = 0
    jobs = [await client.start(command, subscribe=True, timeout=0) for _ in range(n)]

    async def consume(job_id: str) -> None:
        nonlocal received
        async for ev in client.events(job_id):
            data = getattr(ev, "data", None)
            if isinstance(data, str):
                received += len(data)

    tasks = [asyncio.create_task(consume(j.id)) for j in jobs]
    print(json.dumps({"ready": n}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for j in jobs:
        await client.cancel(j.id)
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()
    return {"bytes": received}


# -- scale -------------------------------------------------------------------


def _raise_fd_limit(want: int) -> None:
    """Room for ``want`` descriptors (the hard limit too, where we may raise it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def ws_scale(args: list[str]) -> dict[str, Any]:
    """``ws-scale URL TOKEN N COMMAND``: N WebSocket clients, each running and following one job.

    Prints ``{"ready": N}`` once every job has started and produced its first
    output, waits for stdin to close, then cancels every job, waits for their
    ends and closes every connection.
    """
    from ccxd.client import ClientError, connect
    from ccxd.protocol import JobFinished, OutputChunk

    url, token, n, command = args[0], args[1], int(args[2]), args[3]
    _raise_fd_limit(n + 100)
    first_output: list[asyncio.Future[None]] = []
    clients = []
    job_ids: list[str] = []
    followers = []

    lost = 0

    async def follow(client: Any, job_id: str, seen: asyncio.Future[None]) -> None:
        nonlocal lost
        try:
            async for ev in client.events(job_id):
                if isinstance(ev, OutputChunk) and not seen.done():
                    seen.set_result(None)
                if isinstance(ev, JobFinished):
                    return
        except ClientError:
            lost += 1  # e.g. a keepalive timeout while this one process tears down N connections
            if not seen.done():
                seen.set_result(None)

    t0 = _now()
    # Fewer handshakes at once than the daemon lets one address have in progress
    # (ws_handshakes_per_peer, 16): beyond that it turns connections away at accept.
    sem = asyncio.Semaphore(8)

    async def open_one() -> None:
        async with sem:
            client = await connect(url, token=token, reconnect=False)
            job = await client.start(command, subscribe=True, timeout=0)
        seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        clients.append(client)
        job_ids.append(job.id)
        first_output.append(seen)
        followers.append(asyncio.create_task(follow(client, job.id, seen)))

    await asyncio.gather(*(open_one() for _ in range(n)))
    await asyncio.gather(*first_output)
    ramp = _now() - t0
    print(json.dumps({"ready": n, "ramp_seconds": ramp}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    t1 = _now()
    await asyncio.gather(
        *(c.cancel(j) for c, j in zip(clients, job_ids, strict=True)), return_exceptions=True
    )
    await asyncio.gather(*followers)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {"ramp_seconds": ramp, "stop_seconds": _now() - t1, "lost_connections": lost}


# -- history -----------------------------------------------------------------


async def history_list(args: list[str]) -> dict[str, Any]:
    """``history-list SOCKET REDIS_URL N LIMIT``: ``history.list`` through ccxd vs the store's own query.

    Alternates one call through the daemon (client library, Unix socket) with
    one straight to Redis through ccxd's store code (no daemon, no RPC).
    """
    from ccxd.client import connect
    from ccxd.protocol import HistoryParams, JobList
    from ccxd.store.redis_store import RedisStore

    sock, url, n, limit = args[0], args[1], int(args[2]), int(args[3])
    client = await connect(sock)
    store = RedisStore(url, "bench-direct")
    await store.open()
    via_ccxd: list[float] = []
    direct: list[float] = []
    count = 0
    for _ in range(n):
        t0 = _now()
        res: JobList = await client.call("history.list", HistoryParams(limit=limit))
        via_ccxd.append((_now() - t0) * 1000)
        count = len(res.jobs)
        t0 = _now()
        await store.list_jobs(HistoryParams(limit=limit))
        direct.append((_now() - t0) * 1000)
    await store.close()
    await client.close()
    return {"ccxd_ms": via_ccxd, "direct_ms": direct, "returned": count}


# -- soak --------------------------------------------------------------------


def _seq_bytes(n: int) -> int:
    """Bytes ``seq 1 n`` writes."""
    return sum(len(str(i)) + 1 for i in range(1, n + 1))


async def soak(args: list[str]) -> dict[str, Any]:
    """``soak SOCKET WS_URL TOKEN SECONDS REDIS_URL CLAUDE_ENV``: mixed load, then check every stored record.

    Short jobs with known output (``seq``), 4 MiB streams over WebSocket
    binary frames, failing jobs, cancelled jobs, Claude jobs (the real CLI
    against the fake API; CLAUDE_ENV is its environment as JSON) and jobs
    followed across detach and re-attach run side by side until SECONDS pass.
    Every job's record must then be in the store, finished, with the reason and
    output size the client saw.
    """
    import random

    from ccxd.client import connect
    from ccxd.protocol import JobFinished, JobInfo, OutputChunk
    from ccxd.store.base import StoreUnavailable
    from ccxd.store.redis_store import RedisStore

    sock, ws_url, token, seconds, redis_url = args[0], args[1], args[2], float(args[3]), args[4]
    claude_env: dict[str, str] = json.loads(args[5])
    unix = await connect(sock)
    ws = await connect(ws_url, token=token)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    expected: dict[str, tuple[str, int]] = {}  # job id -> (reason, output bytes)
    problems: list[str] = []
    claude_ids: set[str] = set()
    rng = random.Random(10)

    async def run(
        client: Any, command: str | None, want_bytes: int, want_reason: str, **options: Any
    ) -> None:
        got = 0
        finished: JobInfo | None = None
        job_id = ""
        async for ev in client.run(command, timeout=0, **options):
            if isinstance(ev, OutputChunk):
                job_id = ev.job_id
                got += len(ev.raw())
            elif isinstance(ev, JobFinished):
                finished = ev.job
        assert finished is not None
        expected[finished.id] = (finished.reason.value if finished.reason else "?", got)
        if options.get("kind") == "claude":
            claude_ids.add(finished.id)
            if finished.claude is None or finished.claude.ok is not True:
                problems.append(f"{finished.id}: the Claude job did not succeed: {finished.claude}")
        if got != want_bytes and want_bytes >= 0:
            problems.append(f"{finished.id or job_id}: received {got} bytes, expected {want_bytes}")
        if finished.reason is None or finished.reason.value != want_reason:
            problems.append(f"{finished.id}: reason {finished.reason}, expected {want_reason}")

    async def short_jobs() -> None:
        while loop.time() < deadline:
            n = rng.randint(1, 2000)
            await run(unix, f"seq 1 {n}", _seq_bytes(n), "exited")

    async def streams() -> None:
        size = 4 << 20
        while loop.time() < deadline:
            await run(ws, f"yes 'soak stream line 0123456789' | head -c {size}", size, "exited", binary=True)
            await asyncio.sleep(1)

    async def failing() -> None:
        while loop.time() < deadline:
            await run(unix, "echo to stderr >&2; exit 3", len(b"to stderr\n"), "exited")
            await asyncio.sleep(0.2)

    async def cancelled() -> None:
        while loop.time() < deadline:
            job = await unix.start("echo started; sleep 60", subscribe=True, timeout=0)
            got = 0
            async for ev in unix.events(job.id):
                if isinstance(ev, OutputChunk):
                    got += len(ev.raw())
                    await unix.cancel(job.id)
                elif isinstance(ev, JobFinished):
                    expected[job.id] = (ev.job.reason.value if ev.job.reason else "?", got)
                    if ev.job.reason is None or ev.job.reason.value != "cancelled":
                        problems.append(f"{job.id}: reason {ev.job.reason}, expected cancelled")
            await asyncio.sleep(0.5)

    async def claude_jobs() -> None:
        while loop.time() < deadline:
            await run(
                unix, None, -1, "exited", kind="claude", prompt="tell a story", env=claude_env, cwd="/tmp"
            )
            await asyncio.sleep(2)

    counter = "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); sleep 0.01; done"
    wanted = "".join(f"line {i}\n" for i in range(300)).encode()
    attaches = 0

    async def attach_detach() -> None:
        nonlocal attaches
        while loop.time() < deadline:
            first = await connect(sock)
            job = await first.start(counter, subscribe=True, timeout=0)
            got = b""
            async for ev in first.events(job.id):
                if isinstance(ev, OutputChunk):
                    got += ev.raw()
                    if len(got) >= 200:
                        break
            await first.close()  # detach mid-stream
            await asyncio.sleep(rng.uniform(0.1, 1.5))
            again = await connect(sock)  # re-attach where the first connection stopped
            finished: JobInfo | None = None
            async for ev in again.follow(job.id, from_offset=len(got)):
                if isinstance(ev, OutputChunk):
                    got += ev.raw()
                elif isinstance(ev, JobFinished):
                    finished = ev.job
            await again.close()
            attaches += 1
            assert finished is not None
            expected[job.id] = (finished.reason.value if finished.reason else "?", len(got))
            if got != wanted:
                problems.append(
                    f"{job.id}: {len(got)} bytes across detach/attach, not the {len(wanted)} written"
                )

    await asyncio.gather(
        *(short_jobs() for _ in range(4)), streams(), failing(), cancelled(), claude_jobs(), attach_detach()
    )
    await ws.close()
    await unix.close()

    # Every job must reach the store (write-behind: give it a moment).
    store = RedisStore(redis_url, "soak-check", timeout=10)
    # A Redis SIGKILLed late in the run may still be loading its append-only file
    # (hundreds of MiB after 30 minutes): wait for it rather than fail the check.
    opened = asyncio.get_running_loop().time() + 900
    while True:
        try:
            await store.open()
            break
        except StoreUnavailable:
            if asyncio.get_running_loop().time() > opened:
                raise
            await asyncio.sleep(1)
    missing = list(expected)
    for _ in range(60):
        still = []
        for job_id in missing:
            reason, size = expected[job_id]
            rec = await store.get_job(job_id)
            ok = (
                rec is not None
                and rec.state.value == "finished"
                and rec.output_bytes == size
                and rec.reason is not None
                and rec.reason.value == reason
            )
            if not ok:
                still.append(job_id)
        missing = still
        if not missing:
            break
        await asyncio.sleep(0.5)
    await store.close()
    claude = sum(1 for job_id in expected if job_id in claude_ids)
    return {
        "jobs": len(expected),
        "claude_jobs": claude,
        "attaches": attaches,
        "lost": len(missing),
        "lost_ids": missing[:20],
        "problems": problems[:20],
    }


HANDLERS: dict[str, Handler] = {
    "unix-stream": unix_stream,
    "ws-stream": ws_stream,
    "ws-client": ws_client,
    "jobs-ccxd": jobs_ccxd,
    "jobs-asyncio": jobs_asyncio,
    "latency-ccxd": latency_ccxd,
    "latency-pipe": latency_pipe,
    "background": background_streams,
    "ws-scale": ws_scale,
    "history-list": history_list,
    "soak": soak,
}


def main() -> None:
    """Run the client named by argv[1] and print its result as JSON."""
    name, args = sys.argv[1], sys.argv[2:]
    handler = HANDLERS[name]
    # The bare-asyncio peer runs on the stdlib loop: "bare asyncio" is the point.
    runner = (
        asyncio.run if name == "jobs-asyncio" and os.environ.get("BENCH_PEER_UVLOOP") != "1" else uvloop.run
    )
    result: dict[str, Any] = runner(handler(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
