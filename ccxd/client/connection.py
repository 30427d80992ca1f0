"""The async client: JSON-RPC calls and job event streams over one connection."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from msgspec import Struct

from ccxd import paths
from ccxd.client.core import Answer, ClientCore, Delivery, Received
from ccxd.client.errors import (
    AccessDenied,
    ClientError,
    ConnectionLost,
    DaemonNotRunning,
    InvalidAddress,
    RemoteError,
    UntrustedDaemon,
)
from ccxd.client.transports import Transport, TransportError, open_transport
from ccxd.client.urls import BadAddress, parse_address
from ccxd.protocol import (
    JobFinished,
    JobInfo,
    JobList,
    JobRef,
    ListParams,
    Ok,
    OutputChunk,
    PingResult,
    ReadParams,
    ReadResult,
    SignalParams,
    StartParams,
    StatusResult,
    SubscribeParams,
)

__all__ = [
    "AccessDenied",
    "Client",
    "ClientError",
    "DaemonNotRunning",
    "Event",
    "InvalidAddress",
    "RemoteError",
    "UntrustedDaemon",
    "connect",
]

T = TypeVar("T", bound=Struct)

Event = Struct
"""A notification's params: JobQueued, JobStarted, OutputChunk, OutputGap, OutputCut, JobFinished."""

_QUEUE_DEPTH = 256  # events buffered per followed job before we stop reading the socket
RECONNECT_TIMEOUT = 60.0
_LAST_TRY = 1.0  # seconds the try made at the reconnect deadline may take
"""How long a client keeps reconnecting to a daemon that went away (``$CCXD_RECONNECT_TIMEOUT``)."""


def default_socket() -> Path:
    """Where the daemon listens by default (``$CCXD_SOCKET`` overrides)."""
    env = os.environ.get("CCXD_SOCKET")
    return Path(env) if env else paths.runtime_dir() / "ccxd.sock"


Opener = Callable[[], Awaitable[Transport]]


class Client:
    """One logical connection to a ccxd daemon.

    With ``reconnect`` (the default for :func:`connect`), a dropped connection is
    reopened and every followed job is resubscribed from the offset just past
    the last byte delivered, so output is neither lost nor repeated.  Calls in
    flight when the connection drops fail with :class:`ConnectionLost`.  A daemon
    away for longer than ``reconnect_timeout`` seconds in all (counted from the
    loss until a new connection answers) ends every follower with one
    :class:`ConnectionLost`: "lost the daemon at …: gave up after N s".
    """

    def __init__(
        self,
        transport: Transport,
        opener: Opener | None = None,
        reconnect_timeout: float = RECONNECT_TIMEOUT,
        *,
        binary: bool = True,
    ) -> None:
        self._transport = transport
        self._opener = opener
        self._reconnect_timeout = reconnect_timeout
        self._core = ClientCore()  # ids, replies, which jobs are followed from where
        # Output as binary frames: the bytes as the job wrote them, no JSON to build or
        # parse on either side (a quarter of the daemon's CPU per GiB); events look the same.
        self._core.binary = binary
        self._waiting: dict[int, asyncio.Future[Any]] = {}  # request id: its caller's future
        self._queues: dict[str, asyncio.Queue[Event | None]] = {}  # followed jobs' events
        # Readers of each job's queue: a reader abandoned mid-way (``break`` out of
        # ``events``) is closed only when garbage collected, maybe after a new reader
        # of the same job started; it must not take the queue away from that one.
        self._readers: collections.Counter[str] = collections.Counter()
        self._job_errors: dict[str, ClientError] = {}  # followed jobs that cannot be resumed
        # When the connection was lost (loop time), until a new one answers: bounds the outage.
        self._outage: float | None = None
        self._delay = 0.0  # before the next try to reconnect
        # Set, then replaced, at each reconnect and when the client ends: follow() waits on it.
        self._reconnected = asyncio.Event()
        self._closed: BaseException | None = None
        self._closing = False
        self.reconnects = 0
        self._up = asyncio.Event()
        self._up.set()
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @property
    def description(self) -> str:
        """Where this client is connected."""
        return self._transport.description

    # -- plumbing -------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                err = await self._read_connection()
                if self._closing or self._opener is None:
                    self._fail(err)
                    return
                gave_up = await self._reopen(err)
                if gave_up is not None:
                    self._fail(gave_up)
                    return
        except asyncio.CancelledError:
            self._fail(ClientError("client closed"))
            raise
        except Exception as exc:  # a bug here must end the followers, never leave them waiting
            why = f"{type(exc).__name__}: {exc}"
            self._fail(ClientError(f"the client stopped reading from the daemon: {why}"))

    async def _read_connection(self) -> ClientError:
        """Dispatch what the current connection brings until it ends; why it ended."""
        try:
            async for is_binary, payload in self._transport.messages():
                self._outage = None  # this connection answers: a later loss is a new outage
                await self._dispatch(
                    self._core.receive_binary(payload) if is_binary else self._core.receive(payload)
                )
            return ConnectionLost("the daemon closed the connection")
        except (ConnectionError, OSError) as exc:
            return ConnectionLost(f"connection to the daemon lost: {exc}")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            with contextlib.suppress(Exception):
                await self._transport.close()
            return ConnectionLost(f"the daemon sent something that is not ccxd's protocol: {exc}")

    async def wait_connected(self) -> None:
        """Return once the connection is up (after a reconnect, if one is under way)."""
        await self._up.wait()
        if self._closed is not None:
            raise ClientError(str(self._closed))

    async def _reopen(self, err: ClientError) -> ClientError | None:
        """Reconnect and resume every followed job; the error to end with when the daemon stays away.

        A connection can be accepted and then reset at once (a daemon dying while
        it closes its sockets) or drop before a resubscription is written: that is
        one more loss of the same outage, bounded by the same deadline.
        """
        self._up.clear()
        self._fail_calls(err)
        assert self._opener is not None
        loop = asyncio.get_running_loop()
        if self._outage is None:
            self._outage = loop.time()
            self._delay = 0.0  # the first try at once, then backing off up to 1 s
        deadline = self._outage + self._reconnect_timeout
        gave_up = ConnectionLost(
            f"lost the daemon at {self._transport.description}: gave up after {self._reconnect_timeout:g} s"
        )
        while not self._closing:
            # The back-off also spaces connections that were accepted and then lost
            # before they answered (a daemon crash-looping): they continue this outage.
            if self._delay:
                left = deadline - loop.time()
                if left <= 0:
                    return gave_up
                await asyncio.sleep(min(self._delay, left))  # the last try is at the deadline
            self._delay = min(max(self._delay * 2, 0.05), 1.0)
            try:
                async with asyncio.timeout_at(max(deadline, loop.time() + _LAST_TRY)):
                    transport = await self._opener()
                break
            except TransportError as exc:
                if exc.denied or exc.untrusted:  # no use waiting: say why at once
                    return ConnectionLost(f"lost the daemon at {self._transport.description}: {exc}")
            except TimeoutError:
                return gave_up
        else:
            return err
        self._transport = transport
        self.reconnects += 1
        again = self._core.resubscriptions()
        if not again:
            self._outage = None  # nothing to ask: the connection is as good as the daemon's accept
        self._up.set()
        self._reconnected.set()
        self._reconnected = asyncio.Event()
        for params in again:
            try:
                fut = await self._send_request("job.subscribe", params, follow=False)
            except ConnectionLost:
                break  # lost again already: reading the connection says so, and we start over
            fut.add_done_callback(functools.partial(self._resubscribe_done, params.job_id))
        return None

    def _resubscribe_done(self, job_id: str, fut: asyncio.Future[Any]) -> None:
        """The reply to a resubscription made on reconnecting, which nobody else awaits."""
        if fut.cancelled():
            return
        exc = fut.exception()  # retrieved here: a ConnectionLost is the next reconnect's business
        if isinstance(exc, RemoteError) and job_id in self._queues:
            why = f"job {job_id}: cannot resume it after reconnecting: {exc.message}"
            self._end_job(job_id, ClientError(why))

    def _end_job(self, job_id: str, err: ClientError) -> None:
        """Its followers get what is queued, then ``err``."""
        self._job_errors[job_id] = err
        self._core.next_offset.pop(job_id, None)
        queue = self._queues.get(job_id)
        if queue is not None:
            with contextlib.suppress(asyncio.QueueFull):  # a full queue: its reader sees err once drained
                queue.put_nowait(None)

    async def _dispatch(self, item: Received | None) -> None:
        """Act on what the core made of one message."""
        if isinstance(item, Delivery):
            queue = self._queues.get(item.job_id)
            if queue is not None:
                await queue.put(item.event)
        elif isinstance(item, Answer):
            self._answered(item)
        elif item is not None:  # an error without an id (e.g. refused connection): fail everything
            self._fail(item.error)

    def _answered(self, answer: Answer) -> None:
        fut = self._waiting.pop(answer.id, None)
        if fut is None or fut.done():
            return
        if answer.error is not None:
            fut.set_exception(answer.error)
            return
        if answer.follow:
            # The job's events follow this reply on the wire: route them from now on.
            assert isinstance(answer.result, JobInfo)
            self._follow(answer.result.id, 0)
        else:
            stale = self._core.resubscribed(answer.result)  # follow()'s subscribe: the replay comes next
            queue = self._queues.get(stale) if stale is not None else None
            while queue is not None and not queue.empty():
                queue.get_nowait()
        fut.set_result(answer.result)

    def _follow(self, job_id: str, offset: int) -> asyncio.Queue[Event | None]:
        self._core.follow(job_id, offset)
        return self._queues.setdefault(job_id, asyncio.Queue(_QUEUE_DEPTH))

    def _fail_calls(self, exc: BaseException) -> None:
        """Every call awaiting a reply fails with ``exc``."""
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(exc)
        self._waiting.clear()
        self._core.forget()

    def _fail(self, exc: BaseException) -> None:
        if self._closed is None:
            self._closed = exc
        self._fail_calls(exc)
        self._up.set()
        self._reconnected.set()
        for queue in self._queues.values():
            with contextlib.suppress(asyncio.QueueFull):  # a full queue: its reader sees _closed once drained
                queue.put_nowait(None)

    async def _send_request(self, method: str, params: Struct | None, *, follow: bool) -> asyncio.Future[Any]:
        req_id, data = self._core.request(method, params, follow=follow)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = fut
        try:
            await self._transport.send(data)
        except (ConnectionError, OSError) as exc:
            self._waiting.pop(req_id, None)
            self._core.forget(req_id)
            raise ConnectionLost(f"connection to the daemon lost: {exc}") from None
        return fut

    async def call(self, method: str, params: Struct | None = None, *, follow: bool = False) -> Any:
        """Call ``method`` and return its decoded result; raise :class:`RemoteError`.

        With ``follow``, the result is a job whose events are queued for
        :meth:`events` from the moment the reply arrives.
        """
        if self._closed is not None:
            raise ClientError(str(self._closed))
        fut = await self._send_request(method, params, follow=follow)
        return await fut

    async def close(self) -> None:
        """Close the connection (jobs keep running)."""
        self._closing = True
        self._task.cancel()
        with contextlib.suppress(Exception):
            await self._transport.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- API ------------------------------------------------------------------

    async def start(self, command: str | list[str] | None, **options: Any) -> JobInfo:
        """Start a job; ``options`` are :class:`~ccxd.protocol.StartParams` fields.

        ``command`` is None for a Claude job given by ``kind="claude", prompt=…``.

        With ``subscribe=True`` the job's events are queued from the first one on;
        read them with :meth:`events`.
        """
        if options.get("subscribe") and "binary" not in options:
            options["binary"] = self._core.binary
        params = StartParams(command=command, **options)
        info: JobInfo = await self.call("job.start", params, follow=params.subscribe)
        return info

    async def run(self, command: str | list[str] | None, **options: Any) -> AsyncIterator[Event]:
        """Start a job and yield its events until (and including) ``JobFinished``."""
        job = await self.start(command, subscribe=True, **options)
        async for event in self.events(job.id):
            yield event

    async def follow(self, job_id: str, from_offset: int = 0) -> AsyncIterator[Event]:
        """Replay a job from ``from_offset`` and yield its events until it finishes."""
        # A reader from here on: what arrives while the subscription is made is kept.
        queue = self._follow(job_id, from_offset)
        self._readers[job_id] += 1
        try:
            await self._subscribe_follower(job_id, from_offset)
        except BaseException:
            self._core.resubscribing.pop(job_id, None)
            self._unread(job_id)
            raise
        async for event in self._read(job_id, queue):
            yield event

    async def _subscribe_follower(self, job_id: str, offset: int) -> None:
        """follow()'s subscription, made again on the next connection if this one drops first."""
        while True:
            self._core.resubscribing[job_id] = offset
            reconnected = self._reconnected
            try:
                params = SubscribeParams(job_id=job_id, from_offset=offset, binary=self._core.binary)
                await self.call("job.subscribe", params)
                return
            except ConnectionLost:
                if self._opener is None or self._closing:
                    raise
            await reconnected.wait()
            if self._closed is not None:
                raise ClientError(str(self._closed))

    async def events(self, job_id: str) -> AsyncIterator[Event]:
        """Yield the queued events of a followed job until it finishes."""
        queue = self._follow(job_id, 0)
        self._readers[job_id] += 1
        async for event in self._read(job_id, queue):
            yield event

    async def wait(self, job_id: str) -> JobInfo:
        """Wait until ``job_id`` finishes (its output is not sent) and return its final record."""
        queue = self._follow(job_id, 0)
        self._readers[job_id] += 1
        self._core.quiet.add(job_id)
        try:
            await self.call("job.subscribe", SubscribeParams(job_id=job_id, output=False))
        except BaseException:
            self._unread(job_id)
            raise
        async for event in self._read(job_id, queue):
            if isinstance(event, JobFinished):
                return event.job
        raise ClientError(f"job {job_id}: the daemon stopped sending its events")  # pragma: no cover

    def _unread(self, job_id: str) -> None:
        self._readers[job_id] -= 1
        if self._readers[job_id] <= 0:
            del self._readers[job_id]
            self._queues.pop(job_id, None)
            self._core.unfollow(job_id)
            self._job_errors.pop(job_id, None)

    async def _read(self, job_id: str, queue: asyncio.Queue[Event | None]) -> AsyncIterator[Event]:
        """Yield from ``queue`` (one counted reader of ``job_id``) until the job finishes."""
        try:
            while True:
                if queue.empty():  # checked before each wait: a wakeup lost to a full queue is no hang
                    err = self._job_errors.get(job_id)
                    if err is not None:
                        raise err
                    if self._closed is not None:
                        raise ClientError(str(self._closed))
                event = await queue.get()
                if event is None:
                    continue  # a wakeup: the check above says why
                yield event
                if isinstance(event, JobFinished):
                    return
        finally:
            self._unread(job_id)

    async def get(self, job_id: str) -> JobInfo:
        """One job's record."""
        info: JobInfo = await self.call("job.get", JobRef(job_id))
        return info

    async def list(self, **filters: Any) -> list[JobInfo]:
        """Jobs newest first (filters: state, session, node, limit)."""
        res: JobList = await self.call("job.list", ListParams(**filters))
        return res.jobs

    async def read(self, job_id: str, offset: int = 0, max_bytes: int = 1 << 20) -> ReadResult:
        """A range of a job's output."""
        res: ReadResult = await self.call(
            "job.read", ReadParams(job_id=job_id, offset=offset, max_bytes=max_bytes)
        )
        return res

    async def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job (SIGTERM, grace, SIGKILL for the whole tree)."""
        info: JobInfo = await self.call("job.cancel", JobRef(job_id))
        return info

    async def signal(self, job_id: str, sig: int | str) -> JobInfo:
        """Send a signal to every process of a job."""
        info: JobInfo = await self.call("job.signal", SignalParams(job_id, sig))
        return info

    async def pause(self, job_id: str) -> JobInfo:
        """Stop a job's processes (SIGSTOP)."""
        info: JobInfo = await self.call("job.pause", JobRef(job_id))
        return info

    async def resume(self, job_id: str) -> JobInfo:
        """Continue a paused job (SIGCONT)."""
        info: JobInfo = await self.call("job.resume", JobRef(job_id))
        return info

    async def unsubscribe(self, job_id: str) -> bool:
        """Stop following a job."""
        res: Ok = await self.call("job.unsubscribe", JobRef(job_id))
        return res.ok

    async def status(self) -> StatusResult:
        """The daemon's status."""
        res: StatusResult = await self.call("daemon.status")
        return res

    async def ping(self) -> PingResult:
        """Check the daemon answers."""
        res: PingResult = await self.call("daemon.ping")
        return res


def reconnect_timeout_from(environ: Mapping[str, str]) -> float:
    """``$CCXD_RECONNECT_TIMEOUT`` in seconds, else :data:`RECONNECT_TIMEOUT` (no I/O)."""
    text = environ.get("CCXD_RECONNECT_TIMEOUT", "").strip()
    if not text:
        return RECONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ClientError(f"CCXD_RECONNECT_TIMEOUT: expected a number of seconds, got {text!r}")
    return value


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ClientError(f"cannot read the token file {path}: {why}") from None


async def connect(
    target: str | Path | None = None,
    *,
    token: str | None = None,
    token_file: str | Path | None = None,
    cafile: str | None = None,
    reconnect: bool = True,
    reconnect_timeout: float | None = None,
    binary: bool = True,
) -> Client:
    """Connect to a daemon.

    ``target`` is a socket path, ``unix:PATH``, a ``ws://``/``wss://`` URL, or
    None for ``$CCXD_URL`` or else the default socket.  For WebSocket URLs the
    token comes from ``token``, ``token_file``, ``$CCXD_TOKEN`` or
    ``$CCXD_TOKEN_FILE``, in that order.  ``reconnect_timeout`` (default
    ``$CCXD_RECONNECT_TIMEOUT``, else 60) bounds how long the client waits for a
    daemon that went away before its followers fail.  ``binary`` (the default)
    has followed output sent as binary frames; the events are the same.
    """
    where = str(target) if target else os.environ.get("CCXD_URL") or str(default_socket())
    try:
        address = parse_address(where)
    except BadAddress as exc:
        raise InvalidAddress(str(exc)) from None
    where = address.where if address.kind == "ws" else f"unix:{address.where}"
    if reconnect_timeout is None:
        reconnect_timeout = reconnect_timeout_from(os.environ)
    secret = token
    if secret is None and token_file is not None:
        secret = _read_token(Path(token_file))
    if secret is None:
        secret = os.environ.get("CCXD_TOKEN") or None
    if secret is None and os.environ.get("CCXD_TOKEN_FILE"):
        secret = _read_token(Path(os.environ["CCXD_TOKEN_FILE"]))

    async def opener() -> Transport:
        return await open_transport(where, secret, cafile)

    try:
        transport = await opener()
    except TransportError as exc:
        if exc.not_running:
            raise DaemonNotRunning(str(exc)) from None
        if exc.denied:
            raise AccessDenied(str(exc)) from None
        if exc.untrusted:
            raise UntrustedDaemon(str(exc)) from None
        raise ClientError(str(exc)) from None
    return Client(transport, opener if reconnect else None, reconnect_timeout, binary=binary)


__all__ += ["RECONNECT_TIMEOUT", "ConnectionLost", "OutputChunk", "default_socket", "reconnect_timeout_from"]
