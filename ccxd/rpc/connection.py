"""A client connection as the dispatcher sees it, whatever the transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ccxd.errors import RpcError
from ccxd.protocol import ErrorCode

__all__ = ["BinarySink", "Connection", "Sink"]


class Sink(Protocol):
    """What a transport offers: send one encoded message, wait for room, close."""

    def write(self, message: bytes) -> None:
        """Queue one message (the transport adds its framing)."""

    async def drain(self) -> None:
        """Return when the peer has room for more."""

    @property
    def closing(self) -> bool:
        """True once the connection is going away."""

    def close(self) -> None:
        """Close the connection."""


@runtime_checkable
class BinarySink(Sink, Protocol):
    """A sink that can also send binary messages (WebSocket binary frames, NUL-led records on Unix)."""

    def write_binary(self, message: bytes) -> None:
        """Queue one binary message."""

    def write_binary_parts(self, parts: Sequence[bytes]) -> None:
        """Queue one binary message made of ``parts``, without joining them."""


class Connection:
    """Per-connection state: the sink, who the peer is, and its subscriptions."""

    def __init__(self, sink: Sink, peer: str, transport: str) -> None:
        self.sink = sink
        self.peer = peer
        self.transport = transport
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self.on_idle: Callable[[], None] | None = None
        """Called when the last subscription ends (the transport may then close)."""
        self._binary: BinarySink | None = sink if isinstance(sink, BinarySink) else None

    def require_binary(self, wanted: bool) -> None:
        """Refuse ``binary: true`` with -32602 on a transport without binary frames."""
        if wanted and self._binary is None:
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"binary output needs the WebSocket or Unix transport (this is {self.transport})",
            )

    def send_binary(self, frame: bytes) -> None:
        """Send one binary frame unless the connection is closing."""
        if self._binary is not None and not self._binary.closing:
            self._binary.write_binary(frame)

    def send_binary_parts(self, parts: Sequence[bytes]) -> None:
        """Send one binary frame whose payload is ``parts`` in order (no copy), unless closing."""
        if self._binary is not None and not self._binary.closing:
            self._binary.write_binary_parts(parts)

    def send(self, message: bytes) -> None:
        """Send one encoded message unless the connection is closing."""
        if not self.sink.closing:
            self.sink.write(message)

    @property
    def closing(self) -> bool:
        """True once the peer is gone."""
        return self.sink.closing

    def add_subscription(self, job_id: str, task: asyncio.Task[None]) -> None:
        """Track a subscription task; a second subscription to a job replaces the first."""
        old = self.subscriptions.pop(job_id, None)
        if old is not None:
            old.cancel()
        self.subscriptions[job_id] = task
        task.add_done_callback(lambda t: self._drop(job_id, t))

    def _drop(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self.subscriptions.get(job_id) is task:
            del self.subscriptions[job_id]
            if not self.subscriptions and self.on_idle is not None:
                self.on_idle()

    def cancel_subscription(self, job_id: str) -> bool:
        """Stop following a job; False if it was not followed."""
        task = self.subscriptions.pop(job_id, None)
        if task is None:
            return False
        task.cancel()
        return True

    def closed(self) -> None:
        """The transport lost the peer: stop every subscription (jobs keep running)."""
        for task in list(self.subscriptions.values()):
            task.cancel()
        self.subscriptions.clear()
