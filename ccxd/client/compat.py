"""A drop-in for cc_executor's ``WebSocketClient`` for people migrating.

``execute_command`` returns cc_executor's result dict (``success``,
``exit_code``, ``duration``, ``outputs`` (the number of output lines, as
cc_executor counted its one message per line), ``output_data`` (the output as
one string), ``error`` …) but runs through the native protocol, so exit codes
are real: a job that hit its timeout reports ``success: False``,
``exit_code: 124`` and says so in ``error`` (cc_executor reported exit code 0).
Without ``timeout`` a command has none, as with cc_executor.
"""

from __future__ import annotations

import time
from typing import Any

from ccxd.client.connection import ClientError, connect
from ccxd.protocol import JobFinished, OutputChunk, shell_exit_code
from ccxd.protocol.lines import LineSplitter

__all__ = ["MinimalWebSocketClient", "WebSocketClient"]


class WebSocketClient:
    """cc_executor's client API on top of ccxd."""

    def __init__(
        self,
        host: str = "localhost",
        port: int = 8003,
        *,
        url: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ws_url = url or f"ws://{host}:{port}/ws"
        self._token = token
        self._token_file = token_file

    async def execute_command(
        self, command: str, timeout: float | None = None, restart_handler: bool = False, **_ignored: Any
    ) -> dict[str, Any]:
        """Run ``command`` and return cc_executor's result dict."""
        started = time.time()
        output: list[str] = []
        splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        exit_code: int | None = None
        error: str | None = None
        try:
            client = await connect(
                self.ws_url, token=self._token, token_file=self._token_file, reconnect=True
            )
            try:
                # cc_executor had no timeout unless asked: 0 is none (unset would be ccxd's estimate).
                async for ev in client.run(command, timeout=timeout or 0):
                    if isinstance(ev, OutputChunk):
                        pieces = splitters[ev.stream].feed(ev.raw())
                        output += [p.decode("utf-8", errors="replace") for p in pieces]
                    elif isinstance(ev, JobFinished):
                        job = ev.job
                        if job.reason == "failed_to_start":
                            error = job.error or "failed to start"
                        else:
                            exit_code = shell_exit_code(job.reason, job.exit_code, job.signal)
                        if job.reason in ("timeout", "idle_timeout"):
                            error = f"Command timed out after {job.timeout or job.idle_timeout}s"
            finally:
                await client.close()
        except ClientError as exc:
            error = str(exc)
        output += [tail.decode("utf-8", errors="replace") for s in splitters.values() if (tail := s.flush())]
        return {
            "success": error is None,
            "exit_code": exit_code if exit_code is not None else -1,
            "duration": time.time() - started,
            "restart_overhead": 0,
            "outputs": len(output),
            "output_data": "".join(output),
            "error": error,
        }

    async def execute_batch(
        self,
        tasks: list[tuple[str, str, int]],
        restart_per_task: bool = True,
        restart_every_n: int | None = None,
    ) -> list[dict[str, Any]]:
        """Run ``(name, command, timeout)`` tasks one after another."""
        results = []
        for name, command, timeout in tasks:
            result = await self.execute_command(command, timeout)
            result["task_name"] = name
            results.append(result)
        return results

    async def cleanup(self) -> None:
        """Nothing to clean up (kept for compatibility)."""


MinimalWebSocketClient = WebSocketClient
