"""A small blocking wrapper over the async client, for scripts.

Example::

    from ccxd.client.sync import SyncClient

    with SyncClient() as ccxd:
        result = ccxd.execute("make test", timeout=600)
        print(result.exit_code, result.stdout.decode())
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from msgspec import Struct

from ccxd.client.connection import Client, Event, connect
from ccxd.protocol import JobFinished, JobInfo, OutputChunk, PingResult, StatusResult, shell_exit_code

__all__ = ["ExecResult", "SyncClient"]

T = TypeVar("T")


class ExecResult(Struct):
    """What :meth:`SyncClient.execute` returns."""

    job: JobInfo
    stdout: bytes
    stderr: bytes

    @property
    def exit_code(self) -> int:
        """The job's exit status as a shell reports it (128+N for signal N; 124 on timeout)."""
        j = self.job
        code = shell_exit_code(j.reason, j.exit_code, j.signal)
        return code if code is not None else 1


class SyncClient:
    """Blocking calls to a daemon; the async client runs on a private loop thread."""

    def __init__(self, target: str | Path | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ccxd-client", daemon=True)
        self._thread.start()
        try:
            self._client: Client = self._call(connect(target, **options))
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        """Close the connection and the loop thread."""
        self._call(self._client.close())
        self._stop_loop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, command: str | list[str], **options: Any) -> Iterator[Event]:
        """Start a job and yield its events as they arrive, ending with ``JobFinished``."""
        events: queue.Queue[Event | BaseException | None] = queue.Queue(maxsize=256)

        async def pump() -> None:
            try:
                async for ev in self._client.run(command, **options):
                    await asyncio.get_running_loop().run_in_executor(None, events.put, ev)
            except BaseException as exc:  # handed to the caller's thread
                events.put(exc)
            events.put(None)

        fut = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        while True:
            item = events.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        fut.result()

    def execute(self, command: str | list[str], **options: Any) -> ExecResult:
        """Run a job to completion and return its record and output."""
        out: list[bytes] = []
        err: list[bytes] = []
        job: JobInfo | None = None
        for ev in self.run(command, **options):
            if isinstance(ev, OutputChunk):
                (out if ev.stream == "stdout" else err).append(ev.raw())
            elif isinstance(ev, JobFinished):
                job = ev.job
        assert job is not None
        return ExecResult(job=job, stdout=b"".join(out), stderr=b"".join(err))

    def start(self, command: str | list[str], **options: Any) -> JobInfo:
        """Start a job without waiting for it."""
        return self._call(self._client.start(command, **options))

    def get(self, job_id: str) -> JobInfo:
        """One job's record."""
        return self._call(self._client.get(job_id))

    def list(self, **filters: Any) -> list[JobInfo]:
        """Jobs newest first."""
        return self._call(self._client.list(**filters))

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job."""
        return self._call(self._client.cancel(job_id))

    def pause(self, job_id: str) -> JobInfo:
        """Pause a job."""
        return self._call(self._client.pause(job_id))

    def resume(self, job_id: str) -> JobInfo:
        """Resume a paused job."""
        return self._call(self._client.resume(job_id))

    def status(self) -> StatusResult:
        """The daemon's status."""
        return self._call(self._client.status())

    def ping(self) -> PingResult:
        """Check the daemon answers."""
        return self._call(self._client.ping())
