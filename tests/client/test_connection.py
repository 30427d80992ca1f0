"""The client's reconnects, scripted: connections that die at the worst moments (issue 21).

The daemon here is a script answering ``job.subscribe`` with a job's output from
the offset asked; each connection is accepted, then drops, resets or refuses as
told.  Every follower must resume with each byte once, or fail with one error;
none may wait forever (each test bounds its follower).
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import msgspec
import pytest

from ccxd.client.connection import Client, ClientError
from ccxd.client.transports import Message, TransportError
from ccxd.protocol import JobFinished, JobInfo, OutputChunk, SubscribeResult

JOB = "j1"
OUTPUT = b"".join(b"line %d\n" % i for i in range(400))  # 8-byte chunks: more than a queue holds
RESET = ConnectionResetError(104, "Connection reset by peer")


def _line(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


class Conn:
    """One scripted connection to the daemon.

    ``upto``: send the output up to this offset, then drop; ``reset``: accepted,
    then reset before anything is written; ``mute``: take the request and drop
    without an answer; ``refuse``: answer the subscription with this error.
    """

    description = "unix:/fake/ccxd.sock"

    def __init__(
        self, *, upto: int | None = None, reset: bool = False, mute: bool = False, refuse: str | None = None
    ) -> None:
        self.upto, self.reset, self.mute, self.refuse = upto, reset, mute, refuse
        self.inbox: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.asked: list[int] = []  # offsets subscribed from
        if reset:
            self.inbox.put_nowait(RESET)

    async def send(self, data: bytes) -> None:
        if self.reset:
            raise RESET
        req = json.loads(data)
        assert req["method"] == "job.subscribe"
        offset = req["params"].get("from_offset", 0)
        self.asked.append(offset)
        if self.mute:
            self.inbox.put_nowait(RESET)
            return
        if self.refuse is not None:
            error = {"code": -32001, "message": self.refuse}
            self.inbox.put_nowait(_line({"jsonrpc": "2.0", "id": req["id"], "error": error}))
            return
        job = JobInfo(id=JOB, state="running", command="ticker")
        self.inbox.put_nowait(_line({"jsonrpc": "2.0", "id": req["id"], "result": SubscribeResult(job=job)}))
        end = len(OUTPUT) if self.upto is None else self.upto
        seq = 0
        for start in range(0, len(OUTPUT), 8):
            piece = OUTPUT[start : start + 8]
            if start + len(piece) <= offset or start + len(piece) > end:
                continue
            chunk = OutputChunk(job_id=JOB, stream="stdout", seq=seq, offset=start, data=piece.decode())
            self.inbox.put_nowait(_line({"method": "job.output", "params": chunk}))
            seq += 1
        if self.upto is not None:
            self.inbox.put_nowait(RESET)
        else:
            done = JobInfo(id=JOB, state="finished", command="ticker", exit_code=7, reason="exited")
            finished = {"jsonrpc": "2.0", "method": "job.finished", "params": JobFinished(job=done)}
            self.inbox.put_nowait(_line(finished))

    async def messages(self):  # type: ignore[no-untyped-def]
        while True:
            item = await self.inbox.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            msg: Message = (False, item)
            yield msg

    async def close(self) -> None:
        self.inbox.put_nowait(None)


NOT_RUNNING = TransportError("ccxd is not running (nothing listens on /fake/ccxd.sock)", not_running=True)


def client_over(conns: list[Conn], reconnect_timeout: float = 5.0, then: TransportError = NOT_RUNNING) -> Client:
    """A client on ``conns[0]`` that reopens ``conns[1:]`` in turn, then gets ``then``."""
    rest = iter(conns[1:])

    async def opener() -> Conn:
        conn = next(rest, None)
        if conn is None:
            raise then
        return conn

    return Client(conns[0], opener, reconnect_timeout)  # type: ignore[arg-type]


async def follow_all(client: Client) -> tuple[bytes, JobInfo | None]:
    out = bytearray()
    async for ev in client.follow(JOB):
        if isinstance(ev, OutputChunk):
            assert ev.offset == len(out), "a byte repeated or skipped"
            out += ev.raw()
        elif isinstance(ev, JobFinished):
            return bytes(out), ev.job
    return bytes(out), None


@pytest.fixture
async def loop_errors():  # type: ignore[no-untyped-def]
    """What asyncio reports (e.g. "Future exception was never retrieved"); must stay empty."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: seen.append(str(ctx.get("message"))))
    yield seen
    gc.collect()
    assert seen == []


async def test_a_connection_reset_before_the_resubscription_is_written_is_one_more_loss(loop_errors):
    # A daemon dying can accept a connection and reset it: the write of the
    # resubscription fails.  That used to end the client's reader, and its
    # followers waited forever.
    half = len(OUTPUT) // 2
    last = Conn()
    client = client_over([Conn(upto=half), Conn(reset=True), Conn(reset=True), last])
    out, job = await asyncio.wait_for(follow_all(client), 5)
    assert out == OUTPUT and job is not None and job.exit_code == 7
    assert last.asked == [half // 8 * 8]  # resumed just past the last byte delivered
    assert client.reconnects == 3
    await client.close()


async def test_a_resubscription_that_fails_on_the_next_drop_is_no_unretrieved_error(loop_errors):
    # The resubscription is in flight when the connection drops again: its failure
    # is the next reconnect's business, not an "exception was never retrieved".
    client = client_over([Conn(upto=16), Conn(mute=True), Conn(upto=40), Conn(mute=True), Conn()])
    out, job = await asyncio.wait_for(follow_all(client), 5)
    assert out == OUTPUT and job is not None
    await client.close()


async def test_a_refused_resubscription_ends_its_follower_with_one_error(loop_errors):
    client = client_over([Conn(upto=24), Conn(refuse="no job j1")])
    with pytest.raises(ClientError, match="^job j1: cannot resume it after reconnecting: no job j1$"):
        await asyncio.wait_for(follow_all(client), 5)
    await client.close()


async def test_an_outage_is_bounded_in_all_even_when_connections_are_accepted_then_reset(loop_errors):
    # Each reset restarted the clock before: a daemon crash-looping kept followers forever.
    client = client_over([Conn(upto=8), *(Conn(reset=True) for _ in range(100))], reconnect_timeout=0.5)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(ClientError, match=r"^lost the daemon at unix:/fake/ccxd.sock: gave up after 0.5 s$"):
        await asyncio.wait_for(follow_all(client), 5)
    assert loop.time() - began < 2
    assert client.reconnects < 15  # spaced by the back-off, not a busy loop
    await client.close()


async def test_a_daemon_away_for_good_ends_the_follower_at_the_bound(loop_errors):
    client = client_over([Conn(upto=8)], reconnect_timeout=0.3)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(ClientError, match=r"gave up after 0.3 s$"):
        await asyncio.wait_for(follow_all(client), 5)
    assert 0.3 <= loop.time() - began < 1.3  # tried until the bound, not one back-off short of it
    await client.close()


async def test_the_end_is_not_lost_to_a_full_queue(loop_errors):
    # The follower reads nothing while more events arrive than its queue holds;
    # then the client closes.  The wakeup could not be queued: the follower must
    # still end once it has read what was queued.
    client = client_over([Conn(upto=len(OUTPUT))])
    got: list[OutputChunk] = []
    events = client.follow(JOB)
    got.append(await anext(events))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # the reader queues the rest, and the drop, meanwhile
    await client.close()

    async def rest() -> None:
        async for ev in events:
            got.append(ev)  # type: ignore[arg-type]

    with pytest.raises(ClientError, match="client closed|connection to the daemon lost"):
        await asyncio.wait_for(rest(), 5)


@pytest.mark.parametrize(
    "refusal",
    [
        TransportError("ws://h:8003/ws: authentication failed (token missing or wrong)", denied=True),
        TransportError("refusing /fake/ccxd.sock: its directory is owned by mallory", untrusted=True),
    ],
    ids=["denied", "untrusted"],
)
async def test_a_daemon_that_refuses_us_or_that_we_refuse_ends_the_follower_at_once(loop_errors, refusal):
    client = client_over([Conn(upto=8)], reconnect_timeout=30, then=refusal)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(ClientError) as info:
        await asyncio.wait_for(follow_all(client), 5)
    assert str(info.value) == f"lost the daemon at unix:/fake/ccxd.sock: {refusal}"
    assert loop.time() - began < 1  # not the 30 s of a daemon away
    await client.close()
