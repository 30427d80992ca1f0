"""Output: never deadlocks, byte-exact, resumable, shared, and never slowed by a reader."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket

from ccxd.protocol import JobFinished, OutputChunk, OutputCut
from tests.helpers import run_job

MIB = 1024 * 1024


async def test_100_mib_on_both_streams_at_once_without_deadlock(client):
    command = f"head -c {100 * MIB} /dev/zero & head -c {100 * MIB} /dev/zero >&2; wait"
    sizes = {"stdout": 0, "stderr": 0}
    async for ev in client.run(command, timeout=300):
        if isinstance(ev, OutputChunk):
            sizes[ev.stream] += len(ev.raw())
        elif isinstance(ev, JobFinished):
            job = ev.job
    assert sizes == {"stdout": 100 * MIB, "stderr": 100 * MIB}
    assert job.stdout_bytes == job.stderr_bytes == 100 * MIB and job.exit_code == 0


async def test_random_binary_output_arrives_with_the_same_sha256(client, tmp_root):
    blob = tmp_root / "blob"
    with open("/dev/urandom", "rb") as f:
        blob.write_bytes(f.read(5 * MIB + 123))
    # As job.output notifications (binary frames join chunks; tests/transports/test_unix_binary.py).
    out, _, job, events = await run_job(client, f"cat {blob}", binary=False)
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(blob.read_bytes()).hexdigest()
    chunks = [e for e in events if isinstance(e, OutputChunk)]
    assert any(c.encoding == "base64" for c in chunks)
    # Chunks are at most 64 KiB, numbered without holes, and offsets are contiguous.
    assert all(len(c.raw()) <= 65536 for c in chunks)
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    offset = 0
    for c in chunks:
        assert c.offset == offset
        offset += len(c.raw())


async def test_utf8_is_never_split_inside_a_character(client):
    # Odd-sized writes of multi-byte characters: pipe reads end mid-character.
    script = (
        "import sys,os\n"
        "s=('€😀ü' * 50000).encode()\n"
        "i=0\n"
        "while i < len(s):\n"
        "    n=os.write(1, s[i:i+4093]); i+=n\n"
    )
    out, _, _, events = await run_job(client, ["python3", "-c", script])
    assert out == ("€😀ü" * 50000).encode()
    for ev in events:
        if isinstance(ev, OutputChunk):
            assert ev.encoding == "utf-8"  # every chunk is whole characters


async def test_disconnect_and_resume_from_an_offset(daemon):
    c1 = await daemon.client()
    command = "for i in $(seq 1 2000); do echo line $i; done; sleep 0.5; echo end"
    job = await c1.start(command, subscribe=True)
    got = b""
    async for ev in c1.events(job.id):
        if isinstance(ev, OutputChunk):
            got += ev.raw()
            if len(got) > 5000:
                break
    await c1.close()  # the client goes away mid-stream; the job keeps running
    resume_at = len(got)
    c2 = await daemon.client()
    rest = b""
    async for ev in c2.follow(job.id, from_offset=resume_at):
        if isinstance(ev, OutputChunk):
            assert ev.offset >= resume_at
            rest += ev.raw()
        elif isinstance(ev, JobFinished):
            assert ev.job.exit_code == 0
    expected = "".join(f"line {i}\n" for i in range(1, 2001)).encode() + b"end\n"
    assert got + rest == expected
    await c2.close()


async def test_two_clients_get_identical_streams(daemon):
    a, b = await daemon.client(), await daemon.client()
    job = await a.start("for i in $(seq 3000); do echo $i; done", subscribe=True)

    async def collect(c, follow):
        data = b""
        source = c.follow(job.id) if follow else c.events(job.id)
        async for ev in source:
            if isinstance(ev, OutputChunk):
                data += ev.raw()
        return data

    out_a, out_b = await asyncio.gather(collect(a, False), collect(b, True))
    assert out_a == out_b == "".join(f"{i}\n" for i in range(1, 3001)).encode()
    await a.close()
    await b.close()


async def test_a_slow_subscriber_slows_nobody_and_catches_up_from_the_spool(daemon):
    # A raw subscriber that does not read its socket at all while 50 MiB are written.
    fast = await daemon.client()
    job = await fast.start(f"head -c {50 * MIB} /dev/urandom | base64 -w 100", subscribe=True)
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(str(daemon.socket))
    slow.sendall(
        json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "job.subscribe", "params": {"job_id": job.id}}
        ).encode()
        + b"\n"
    )
    digest = hashlib.sha256()
    async for ev in fast.events(job.id):  # the other client streams the whole job
        if isinstance(ev, OutputChunk):
            digest.update(ev.raw())
        elif isinstance(ev, JobFinished):
            total = ev.job.output_bytes
    assert total > 50 * MIB  # base64 grows it; the job finished while `slow` read nothing
    # Now the slow reader drains: it gets every byte, in order, then job.finished.
    slow_digest = hashlib.sha256()
    buf = b""
    loop = asyncio.get_running_loop()
    slow.setblocking(False)
    done = False
    while not done:
        data = await loop.sock_recv(slow, 1 << 20)
        assert data, "daemon closed the slow subscriber"
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            msg = json.loads(line)
            if msg.get("method") == "job.output":
                slow_digest.update(OutputChunk(**msg["params"]).raw())
            elif msg.get("method") == "job.finished":
                done = True
            assert msg.get("method") != "job.gap"
    assert slow_digest.hexdigest() == digest.hexdigest()
    slow.close()
    await fast.close()


async def test_output_beyond_the_memory_buffer_replays_from_the_spool(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_BUFFER_SIZE": "65536"})
    c = await d.client()
    out, _, job, _ = await run_job(c, f"head -c {3 * MIB} /dev/urandom | base64")
    replay = b""
    async for ev in c.follow(job.id):
        if isinstance(ev, OutputChunk):
            replay += ev.raw()
    assert replay == out and len(out) > 3 * MIB
    page = await c.read(job.id, offset=MIB + 7, max_bytes=1000)
    assert b"".join(ch.raw() for ch in page.chunks) == out[MIB + 7 : MIB + 1007]
    await c.close()


async def test_spool_cap_cuts_with_a_marker(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_SPOOL_MAX_BYTES": "100000", "CCXD_BUFFER_SIZE": "65536"})
    c = await d.client()
    cut = None
    async for ev in c.run(f"head -c {MIB} /dev/zero"):
        if isinstance(ev, OutputCut):
            cut = ev
        elif isinstance(ev, JobFinished):
            job = ev.job
    assert cut is not None and cut.limit == 100000
    assert job.output_cut and job.output_bytes == MIB
    await c.close()


async def test_a_reader_abandoned_mid_job_does_not_take_the_events_of_a_later_one(client, tmp_root):
    # ``break`` out of ``events()`` leaves the generator open until it is garbage
    # collected, possibly after the caller began following the same job again.
    from ccxd.protocol import JobStarted

    go = tmp_root / "go"
    job = await client.start(f"while [ ! -e {go} ]; do sleep 0.02; done; echo done", subscribe=True)
    old = client.events(job.id)
    assert isinstance(await old.__anext__(), JobStarted)
    new = client.events(job.id)
    first = asyncio.ensure_future(new.__anext__())
    await asyncio.sleep(0)  # one loop turn: the new reader is waiting on the job's events
    await old.aclose()  # what the garbage collector does to the abandoned one, later
    go.touch()

    async def rest() -> list:
        return [await first] + [ev async for ev in new]

    events = await asyncio.wait_for(rest(), 30)
    out = b"".join(ev.raw() for ev in events if isinstance(ev, OutputChunk))
    assert out == b"done\n" and isinstance(events[-1], JobFinished)


async def test_finished_jobs_spools_are_bounded_in_all_and_their_output_stays_readable(daemon_factory, tmp_root):
    root = tmp_root / "bounded"
    d = daemon_factory(root=root, extra_env={"CCXD_SPOOL_MAX_TOTAL": str(MIB), "CCXD_BUFFER_SIZE": "65536"})
    spool = root / "state" / "ccxd" / "spool"

    def spooled() -> int:
        return sum(p.stat().st_size for p in spool.glob("*.out"))

    c = await d.client()
    outputs = {}
    for i in range(6):
        out, _, job, _ = await run_job(c, f"head -c 400000 /dev/urandom | base64; echo {i}")
        outputs[job.id] = out
    # A spool goes once the store has its job's output; each job that ends looks again.
    for _ in range(100):
        if spooled() <= MIB:
            break
        await run_job(c, "true")
    assert spooled() <= MIB  # before: 6 x 540 kB, every finished job kept its whole spool
    assert len(list(spool.glob("*.out"))) < 6
    for job_id, out in outputs.items():
        page = await c.read(job_id, max_bytes=1 << 20)  # from the store once the spool is gone
        assert b"".join(ch.raw() for ch in page.chunks) == out and page.eof
        assert (await c.get(job_id)).stdout_bytes == len(out)
    await c.close()
