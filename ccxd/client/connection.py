"""The async client: JSON-RPC calls and job event streams over one connection."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET, Struct

from ccxd import paths
from ccxd.protocol import (
    METHODS,
    NOTIFICATIONS,
    EmptyParams,
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
    Reply,
    Request,
    SignalParams,
    StartParams,
    StatusResult,
    SubscribeParams,
)
from ccxd.transports.framing import LineFramer

__all__ = ["Client", "ClientError", "DaemonNotRunning", "Event", "RemoteError", "connect"]

T = TypeVar("T", bound=Struct)

Event = Struct
"""A notification's params: JobQueued, JobStarted, OutputChunk, OutputGap, OutputCut, JobFinished."""

_READ_SIZE = 256 * 1024
_QUEUE_DEPTH = 256  # events buffered per followed job before we stop reading the socket


class ClientError(Exception):
    """Something went wrong talking to the daemon."""


class DaemonNotRunning(ClientError):
    """Nothing is listening where the daemon should be."""


class RemoteError(ClientError):
    """The daemon answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


def default_socket() -> Path:
    """Where the daemon listens by default (``$CCXD_SOCKET`` overrides)."""
    env = os.environ.get("CCXD_SOCKET")
    return Path(env) if env else paths.runtime_dir() / "ccxd.sock"


_reply_decoder = msgspec.json.Decoder(Reply)
_encoder = msgspec.json.Encoder()


class Client:
    """One connection to a ccxd daemon."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], type[Struct], bool]] = {}
        self._queues: dict[str, asyncio.Queue[Event | None]] = {}
        self._closed: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    # -- plumbing -------------------------------------------------------------

    async def _read_loop(self) -> None:
        framer = LineFramer(1 << 62)
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                for line in framer.feed(data):
                    assert isinstance(line, bytes)
                    await self._dispatch(line)
            self._fail(ClientError("the daemon closed the connection"))
        except (ConnectionError, OSError) as exc:
            self._fail(ClientError(f"connection to the daemon lost: {exc}"))
        except asyncio.CancelledError:
            self._fail(ClientError("client closed"))
            raise

    async def _dispatch(self, line: bytes) -> None:
        msg = _reply_decoder.decode(line)
        if msg.method is not UNSET:
            kind = NOTIFICATIONS.get(msg.method)
            if kind is None or msg.params is UNSET:
                return
            event = msgspec.json.decode(msg.params, type=kind)
            job_id = event.job.id if isinstance(event, JobFinished) else event.job_id  # type: ignore[attr-defined]
            queue = self._queues.get(job_id)
            if queue is not None:
                await queue.put(event)
            return
        if not isinstance(msg.id, int):
            if msg.error is not UNSET:
                # An error without an id (e.g. refused connection): fail everything.
                self._fail(RemoteError(msg.error.code, msg.error.message, msg.error.data))
            return
        entry = self._pending.pop(msg.id, None)
        if entry is None:
            return
        fut, result_type, follow = entry
        if fut.done():
            return
        if msg.error is not UNSET:
            err = msg.error
            data = None if err.data is UNSET else err.data
            fut.set_exception(RemoteError(err.code, err.message, data))
            return
        try:
            result = msgspec.json.decode(msg.result, type=result_type)  # type: ignore[arg-type]
        except msgspec.ValidationError as exc:
            fut.set_exception(ClientError(f"unexpected reply: {exc}"))
            return
        if follow:
            # The job's events follow this reply on the wire: route them from now on.
            assert isinstance(result, JobInfo)
            self._queues.setdefault(result.id, asyncio.Queue(_QUEUE_DEPTH))
        fut.set_result(result)

    def _fail(self, exc: BaseException) -> None:
        if self._closed is None:
            self._closed = exc
        for fut, _, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        for queue in self._queues.values():
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def call(self, method: str, params: Struct | None = None, *, follow: bool = False) -> Any:
        """Call ``method`` and return its decoded result; raise :class:`RemoteError`.

        With ``follow``, the result is a job whose events are queued for
        :meth:`events` from the moment the reply arrives.
        """
        if self._closed is not None:
            raise ClientError(str(self._closed))
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (fut, METHODS[method][1], follow)
        body = Request(
            method=method,
            jsonrpc="2.0",
            params=msgspec.Raw(_encoder.encode(params if params is not None else EmptyParams())),
            id=req_id,
        )
        self._writer.write(_encoder.encode(body) + b"\n")
        await self._writer.drain()
        return await fut

    async def close(self) -> None:
        """Close the connection (jobs keep running)."""
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- API ------------------------------------------------------------------

    async def start(self, command: str | list[str], **options: Any) -> JobInfo:
        """Start a job; ``options`` are :class:`~ccxd.protocol.StartParams` fields.

        With ``subscribe=True`` the job's events are queued from the first one on;
        read them with :meth:`events`.
        """
        params = StartParams(command=command, **options)
        info: JobInfo = await self.call("job.start", params, follow=params.subscribe)
        return info

    async def run(self, command: str | list[str], **options: Any) -> AsyncIterator[Event]:
        """Start a job and yield its events until (and including) ``JobFinished``."""
        job = await self.start(command, subscribe=True, **options)
        async for event in self.events(job.id):
            yield event

    async def follow(self, job_id: str, from_offset: int = 0) -> AsyncIterator[Event]:
        """Replay a job from ``from_offset`` and yield its events until it finishes."""
        self._queues.setdefault(job_id, asyncio.Queue(_QUEUE_DEPTH))
        await self.call("job.subscribe", SubscribeParams(job_id=job_id, from_offset=from_offset))
        async for event in self.events(job_id):
            yield event

    async def events(self, job_id: str) -> AsyncIterator[Event]:
        """Yield the queued events of a followed job until it finishes."""
        queue = self._queues.setdefault(job_id, asyncio.Queue(_QUEUE_DEPTH))
        try:
            while True:
                event = await queue.get()
                if event is None:
                    raise ClientError(str(self._closed or "connection closed"))
                yield event
                if isinstance(event, JobFinished):
                    return
        finally:
            self._queues.pop(job_id, None)

    async def get(self, job_id: str) -> JobInfo:
        """One job's record."""
        info: JobInfo = await self.call("job.get", JobRef(job_id))
        return info

    async def list(self, **filters: Any) -> list[JobInfo]:
        """Jobs newest first (filters: state, session, limit)."""
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


async def connect(target: str | Path | None = None) -> Client:
    """Connect to a daemon: a socket path, ``unix:PATH``, or the default socket."""
    path = _socket_path(target)
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=_READ_SIZE)
    except FileNotFoundError:
        raise DaemonNotRunning(f"ccxd is not running (no socket at {path})") from None
    except ConnectionRefusedError:
        raise DaemonNotRunning(f"ccxd is not running (nothing listens on {path})") from None
    except PermissionError:
        raise ClientError(f"permission denied for {path}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR):
            raise DaemonNotRunning(f"ccxd is not running ({path} is not a socket)") from None
        raise ClientError(f"cannot connect to {path}: {exc}") from None
    return Client(reader, writer)


def _socket_path(target: str | Path | None) -> Path:
    if target is None or target == "":
        return default_socket()
    text = str(target)
    if text.startswith("unix:"):
        text = text[5:]
        if text.startswith("//"):
            text = text[2:]
    return Path(text)


__all__ += ["OutputChunk", "default_socket"]
