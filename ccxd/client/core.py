"""The client's side of the protocol without I/O: ids, encoding, replies, job subscriptions.

The async client (:mod:`ccxd.client.connection`) and the blocking one
(:mod:`ccxd.client.blocking`) send what :meth:`ClientCore.request` encodes and
feed it what their connections read; it says what each message is (an answer
to a request, an event for a followed job, a refusal) and keeps which jobs are
followed from which offset, so that events repeated after a reconnect are
dropped.  It never reads, writes, waits or imports asyncio, as ``websockets``
keeps ``protocol.py`` apart from its asyncio and sync layers.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
from msgspec import UNSET, Struct

from ccxd.client.errors import ClientError, RemoteError
from ccxd.protocol import (
    METHODS,
    NOTIFICATIONS,
    OUTPUT_NOTIFICATION_PREFIX,
    EmptyParams,
    JobFinished,
    JobStarted,
    OutputChunk,
    OutputNotification,
    Reply,
    Request,
    SubscribeParams,
    SubscribeResult,
)

__all__ = ["Answer", "ClientCore", "Delivery", "Received", "Refused"]

_reply_decoder = msgspec.json.Decoder(Reply)
_encoder = msgspec.json.Encoder()
_output: list[msgspec.json.Decoder[OutputNotification]] = []  # made on first use: ccxctl run never needs it


def _output_decoder() -> msgspec.json.Decoder[OutputNotification]:
    if not _output:
        _output.append(msgspec.json.Decoder(OutputNotification))  # a third of a millisecond to make
    return _output[0]


# Structs, not NamedTuples: a NamedTuple class costs a tenth of a millisecond to make, at every start.
class Answer(Struct):
    """The reply to request ``id``: its result decoded to the method's type, or ``error``."""

    id: int
    result: Any
    error: ClientError | None
    follow: bool  # asked with follow: the result is a job whose events come next


class Delivery(Struct):
    """An event of a followed job, not seen before."""

    job_id: str
    event: Struct


class Refused(Struct):
    """An error without a request id: the daemon turned the connection away."""

    error: RemoteError


Received = Answer | Delivery | Refused


def byte_size(chunk: OutputChunk) -> int:
    """How many output bytes ``chunk`` carries, without building them when it can."""
    if chunk.encoding == "base64":
        return len(chunk.raw())
    data = chunk.data
    # An ASCII str (known in O(1)) has as many bytes as characters: no encode needed.
    return len(data) if data.isascii() else len(data.encode("utf-8"))


def remote_error(msg: Reply) -> RemoteError:
    """The :class:`RemoteError` of an error reply."""
    err = msg.error
    assert err is not UNSET
    return RemoteError(err.code, err.message, None if err.data is UNSET else err.data)


class ClientCore:
    """One connection's protocol state (kept across reconnects by the async client)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Any, bool]] = {}  # request id: (result type, follow)
        self.followed: set[str] = set()  # jobs whose events are delivered
        self.next_offset: dict[str, int] = {}  # per followed job: the first output byte not delivered
        # Jobs being (re)subscribed by a follower, with the offset asked for: events of an
        # earlier subscription of the job can still be on the wire, and until the reply
        # they are that subscription's (the daemon sends a new one's events after it).
        self.resubscribing: dict[str, int] = {}
        self.quiet: set[str] = set()  # jobs followed without their output
        self.binary = False  # ask for output as binary frames (the bytes as written, no JSON)
        self._started: set[str] = set()

    # -- requests -------------------------------------------------------------

    def request(
        self, method: str, params: Struct | None = None, *, follow: bool = False, result_type: Any = None
    ) -> tuple[int, bytes]:
        """A new request's id and encoded message; its reply is matched by :meth:`receive`.

        ``result_type`` overrides the protocol's result type of ``method``.
        """
        req_id = next(self._ids)
        self._pending[req_id] = (METHODS[method][1] if result_type is None else result_type, follow)
        body = Request(
            method=method,
            jsonrpc="2.0",
            params=msgspec.Raw(_encoder.encode(params if params is not None else EmptyParams())),
            id=req_id,
        )
        return req_id, _encoder.encode(body)

    def forget(self, req_id: int | None = None) -> None:
        """No reply is awaited for ``req_id`` any more (None: for any request)."""
        if req_id is None:
            self._pending.clear()
        else:
            self._pending.pop(req_id, None)

    # -- incoming -------------------------------------------------------------

    @staticmethod
    def envelope(line: bytes) -> Reply:
        """The JSON-RPC envelope of one message (raises msgspec.DecodeError)."""
        return _reply_decoder.decode(line)

    def receive(self, line: bytes | bytearray) -> Received | None:
        """What one text message is; None for one with nothing to do (raises msgspec errors)."""
        if line.startswith(OUTPUT_NOTIFICATION_PREFIX):  # the bulk: decoded in one step
            chunk = _output_decoder().decode(line).params
            return self._delivery(chunk.job_id, chunk)
        return self.receive_envelope(_reply_decoder.decode(line))

    def receive_binary(self, frame: bytes | bytearray) -> Delivery | None:
        """An output chunk in a binary frame (WebSocket, or a NUL-led record on the Unix socket)."""
        from ccxd import protocol  # only subscribers that asked for binary output get them

        chunk, size = protocol.decode_output_frame_sized(frame)
        return self._delivery(chunk.job_id, chunk, size)

    def receive_envelope(self, msg: Reply) -> Received | None:
        """What a decoded envelope is: an event, an answer, a refusal, or nothing to do."""
        if msg.method is not UNSET:
            kind = NOTIFICATIONS.get(msg.method)
            if kind is None or msg.params is UNSET:
                return None
            event = msgspec.json.decode(msg.params, type=kind)
            job_id = event.job.id if isinstance(event, JobFinished) else event.job_id  # type: ignore[attr-defined]
            return self._delivery(job_id, event)
        if not isinstance(msg.id, int):
            return Refused(remote_error(msg)) if msg.error is not UNSET else None
        return self.answer(msg)

    def answer(self, msg: Reply) -> Answer | None:
        """The reply ``msg`` matched to its request; None for a reply nobody awaits."""
        assert isinstance(msg.id, int)
        entry = self._pending.pop(msg.id, None)
        if entry is None:
            return None
        result_type, follow = entry
        if msg.error is not UNSET:
            return Answer(msg.id, None, remote_error(msg), follow)
        try:
            result = msgspec.json.decode(msg.result, type=result_type)  # type: ignore[arg-type]
        except msgspec.ValidationError as exc:
            return Answer(msg.id, None, ClientError(f"unexpected reply: {exc}"), follow)
        return Answer(msg.id, result, None, follow)

    # -- subscriptions --------------------------------------------------------

    def follow(self, job_id: str, offset: int = 0) -> None:
        """Deliver ``job_id``'s events from now on, its output from ``offset``."""
        self.followed.add(job_id)
        self.next_offset.setdefault(job_id, offset)

    def unfollow(self, job_id: str) -> None:
        """Stop delivering ``job_id``'s events."""
        self.followed.discard(job_id)
        self.next_offset.pop(job_id, None)
        self.quiet.discard(job_id)

    def resubscribed(self, result: Any) -> str | None:
        """A follower's subscription answered: the job whose queued events are stale (its replay follows)."""
        if not isinstance(result, SubscribeResult) or result.job.id not in self.resubscribing:
            return None
        job_id = result.job.id
        self.next_offset[job_id] = self.resubscribing.pop(job_id)
        self._started.discard(job_id)
        return job_id

    def resubscriptions(self) -> list[SubscribeParams]:
        """What to ask a new connection for every followed job to go on where its output stopped."""
        return [
            SubscribeParams(
                job_id=job_id,
                from_offset=offset,
                output=job_id not in self.quiet,
                binary=self.binary and job_id not in self.quiet,
            )
            for job_id, offset in self.next_offset.items()
            if job_id in self.followed and job_id not in self.resubscribing  # a follower makes its own
        ]

    def _delivery(self, job_id: str, event: Struct, size: int = -1) -> Delivery | None:
        """``event`` for its follower, unless nobody follows the job or it was delivered already."""
        if job_id not in self.followed or job_id in self.resubscribing:
            return None
        if isinstance(event, OutputChunk):
            if size < 0:
                size = byte_size(event)
            end = event.offset + size
            if end <= self.next_offset.get(job_id, 0):
                return None  # already delivered before a reconnect
            self.next_offset[job_id] = end
        elif isinstance(event, JobStarted):
            if job_id in self._started:
                return None
            self._started.add(job_id)
        elif isinstance(event, JobFinished):
            self.next_offset.pop(job_id, None)
            self._started.discard(job_id)
        return Delivery(job_id, event)
