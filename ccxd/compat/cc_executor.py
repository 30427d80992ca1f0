"""cc_executor's WebSocket API, served by ccxd's supervisor.

:class:`CompatHandler` gives WebSocket connections their dispatcher: the native
one with the legacy methods (:data:`LEGACY_METHODS`: ``execute``, ``control``,
``pong``, ``hook_status``) registered beside the native ones as one more method
set (:meth:`Dispatcher.with_methods`), answered here.  Native calls go straight
to their handlers; the native dispatcher on the Unix socket never learns the
legacy names.  The adapter also opens and closes each connection's session.

What a cc_executor client sees:

* On every WebSocket connection (``/ws`` and ``/ws/mcp``, authenticated or
  not) the first message is a ``connected`` notification
  ``{session_id, version, capabilities}``.  Native clients ignore it.
* ``execute {command, timeout?}`` starts a real ccxd job (tagged
  ``cc_executor``, so ``ccxctl ps`` shows it) and answers
  ``{status: "started", pid, pgid, job_id}`` once the process runs (a job that
  must queue for a slot answers when it starts).  Without ``timeout`` it has
  none, as in cc_executor (``idle_timeout`` still applies).  Then come
  ``process.started``, ``process.output`` (one per output line, as
  cc_executor's ``readline`` loop sent them: :mod:`ccxd.protocol.lines`) and
  ``process.completed`` with the real exit code: ``completed`` for 0,
  ``failed`` otherwise, 124 for a timeout, 128+N for signal N.  Every
  ``process.*`` notification carries ``job_id``.  A job that cannot run ends
  with ``process.failed {error}``; a failure while following it with
  ``process.error {error}``.  One ``execute`` job runs per connection at a
  time (-32602 otherwise); the next ``execute`` works as soon as it finished
  or was cancelled.
* ``control {type: PAUSE|RESUME|CANCEL}`` acts on that job, answers
  ``{status: paused|resumed|canceled}`` and then sends ``process.paused`` /
  ``process.resumed`` / ``process.canceled``.  A cancelled job sends no
  ``process.completed`` (as in cc_executor); no running job is -32002, as in
  cc_executor.
* A ``ping`` notification ``{timestamp}`` every ``ws_legacy_ping_interval``
  seconds (cc_executor: 30); the client's ``pong`` (request or notification) is
  accepted and ignored.
* ``hook_status`` answers ``{enabled, hooks, message}`` from the loaded hooks
  (``point:name`` each; ``enabled`` false when none are loaded).

A connection's ``execute`` job is cancelled when the connection closes, as
cc_executor killed it (``legacy_cancel_on_disconnect``; false keeps it running,
to be followed again with ``job.subscribe`` and the ``job_id`` from the
result).  A daemon that is stopping leaves them to its stop mode instead.

Error codes are cc_executor's on the legacy methods (:data:`_LEGACY_CODES`):
-32001 a command refused (by a pre-execution hook here), -32002 no process
running, -32602 bad params or a process already running, -32603 anything else
(``data.ccxd_code`` then holds ccxd's own code).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from msgspec import Struct

from ccxd import __version__
from ccxd.errors import JobError, RpcError
from ccxd.jobs.job import Job
from ccxd.output.log import STREAMS
from ccxd.protocol import (
    LEGACY_METHODS,
    ClaudeErrorNotice,
    Connected,
    ControlParams,
    ControlResult,
    ErrorCode,
    ErrorObject,
    ErrorResponse,
    ExecuteParams,
    ExecuteResult,
    HookStatusResult,
    JobReason,
    LegacyParams,
    LegacyPing,
    Ok,
    ProcessCompleted,
    ProcessError,
    ProcessOutput,
    ProcessStatus,
    Response,
    StartParams,
    encode,
    error,
    legacy_notification,
    shell_exit_code,
)
from ccxd.protocol.lines import LineSplitter
from ccxd.rpc.codec import Call
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.supervision.supervisor import Supervisor

__all__ = ["CAPABILITIES", "CompatHandler", "final_notification"]

log = logging.getLogger("ccxd.compat")

CAPABILITIES = ["execute", "control", "stream", "hook_status", "ccxd.native", "ccxd.binary"]
"""What ``connected`` announces: cc_executor's three, ``hook_status``, and ccxd's own API."""
JOB_TAG = "cc_executor"
COMMAND_NOT_ALLOWED = -32001
"""cc_executor's code for a command it refused (ccxd: a pre-execution hook refused it)."""
PROCESS_NOT_FOUND = -32002
"""cc_executor's code for ``control`` with no process running."""
_SUBSCRIPTION_PREFIX = "cc_executor:"

LegacyHandler = Callable[[Any, Connection], Awaitable[Struct]]


class _Session:
    """One connection's cc_executor state: its current ``execute`` job."""

    __slots__ = ("follower", "id", "job")

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self.job: Job | None = None
        self.follower: asyncio.Task[None] | None = None


class CompatHandler:
    """The WebSocket transport's session handler: sessions, and a dispatcher with the legacy methods."""

    def __init__(self, native: Dispatcher, sup: Supervisor, ping_interval: float | None = 30.0) -> None:
        self.sup = sup
        self.ping_interval = ping_interval
        self.sessions: dict[Connection, _Session] = {}
        self._stopping = False
        self._pinger: asyncio.Task[None] | None = None
        self._handlers: dict[str, LegacyHandler] = {
            "execute": self._execute,
            "control": self._control,
            "pong": self._pong,
            "hook_status": self._hook_status,
        }
        assert set(self._handlers) == set(LEGACY_METHODS)
        self.dispatcher = native.with_methods(dict.fromkeys(LEGACY_METHODS, self._call))
        """What answers a WebSocket connection's messages: native and legacy methods in one table."""

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start sending ``ping`` notifications (when an interval is set)."""
        if self.ping_interval is not None and self._pinger is None:
            self._pinger = asyncio.get_running_loop().create_task(self._ping_loop(self.ping_interval))

    async def stop(self) -> None:
        """Stop the pings; from now on a closing connection leaves its job to the daemon's stop mode."""
        self._stopping = True
        if self._pinger is not None:
            self._pinger.cancel()
            await asyncio.gather(self._pinger, return_exceptions=True)
            self._pinger = None

    def open(self, conn: Connection) -> bytes:
        """Register the connection; its first message is ``connected``."""
        session = _Session()
        self.sessions[conn] = session
        hello = Connected(session_id=session.id, version=__version__, capabilities=CAPABILITIES)
        return encode(legacy_notification("connected", hello))

    def close(self, conn: Connection) -> None:
        """Forget the connection and cancel its ``execute`` job (``legacy_cancel_on_disconnect``)."""
        session = self.sessions.pop(conn, None)
        job = session.job if session is not None else None
        if job is None or job.finished or job.stop_reason is not None or self._stopping:
            return
        if not self.sup.config.legacy_cancel_on_disconnect:
            return
        log.info("job %s: its cc_executor connection %s closed; cancelling it", job.id, conn.peer)
        try:
            self.sup.cancel(job.id)
        except (JobError, RpcError) as exc:  # it ended meanwhile
            log.debug("job %s: not cancelled: %s", job.id, exc.message)

    async def _ping_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            message = encode(legacy_notification("ping", LegacyPing(timestamp=time.time())))
            for conn in list(self.sessions):
                conn.send(message)

    # -- dispatch -------------------------------------------------------------

    async def _call(self, call: Call, conn: Connection) -> Response | ErrorResponse:
        """One legacy call: cc_executor's params (unknown members ignored) and error codes."""
        try:
            params = _decode_params(call.method, call.params)
        except ValueError as exc:
            return error(call.id, ErrorCode.INVALID_PARAMS, f"invalid params: {exc}")
        try:
            result = await self._handlers[call.method](params, conn)
        except (JobError, RpcError) as exc:
            wire = Dispatcher.wire_error(exc)
            code, data = _legacy_error(wire)
            return ErrorResponse(id=call.id, error=ErrorObject(code=code, message=wire.message, data=data))
        except Exception:
            log.exception("internal error in %s", call.method)
            return error(call.id, ErrorCode.INTERNAL_ERROR, f"internal error in {call.method}")
        return Response(id=call.id, result=result)

    def _session(self, conn: Connection) -> _Session:
        session = self.sessions.get(conn)
        if session is None:  # a transport that did not call open()
            session = self.sessions[conn] = _Session()
        return session

    # -- methods --------------------------------------------------------------

    async def _execute(self, p: ExecuteParams, conn: Connection) -> ExecuteResult:
        session = self._session(conn)
        old = session.job
        if old is not None and not old.finished:
            if old.stop_reason is None:
                raise RpcError(
                    ErrorCode.INVALID_PARAMS,
                    f"A process is already running (job {old.id}); "
                    "wait for process.completed or send control CANCEL",
                    {"job_id": old.id},
                )
            _stop_follower(conn, session)  # it is being stopped: do not mix its events in
        # cc_executor had no timeout unless asked: unset is none (0), never ccxd's estimate.
        params = StartParams(command=p.command, timeout=p.timeout or 0, tags=[JOB_TAG])
        job = await self.sup.start(params, peer=conn.peer)
        session.job = job  # from here on, a closing connection cancels it
        await _started(job)
        if job.pid is None:
            raise RpcError(
                ErrorCode.INTERNAL_ERROR,
                f"the command could not start: {job.error or job.reason}",
                {"job_id": job.id},
            )
        def next_attempt(job_id: str) -> Job | None:
            """A retried Claude job's next attempt: the client follows the chain to its end."""
            nxt = self.sup.jobs.get(job_id)
            if nxt is not None:
                session.job = nxt  # control and a closing connection reach the attempt that runs
                conn.add_subscription(_SUBSCRIPTION_PREFIX + nxt.id, task)
            return nxt

        # The follower's first message goes out after this reply: tasks run later.
        task = asyncio.get_running_loop().create_task(_follow(conn, job, session.id, next_attempt))
        session.follower = task
        conn.add_subscription(_SUBSCRIPTION_PREFIX + job.id, task)
        return ExecuteResult(status="started", pid=job.pid, pgid=job.pgid or job.pid, job_id=job.id)

    async def _control(self, p: ControlParams, conn: Connection) -> ControlResult:
        session = self._session(conn)
        job = session.job
        if job is None or job.finished or job.stop_reason is not None:
            raise RpcError(ErrorCode.JOB_NOT_ACTIVE, "No process is running")  # -32002 to the client
        status: Any
        if p.type == "PAUSE":
            self.sup.pause(job.id)
            status = "paused"
        elif p.type == "RESUME":
            self.sup.resume(job.id)
            status = "resumed"
        else:
            self.sup.cancel(job.id)
            _stop_follower(conn, session)
            session.job = None
            status = "canceled"
        note = encode(
            legacy_notification(f"process.{status}", ProcessStatus(status, job.pid, job.pgid, job.id))
        )
        asyncio.get_running_loop().call_soon(conn.send, note)  # after the reply
        return ControlResult(status=status)

    async def _pong(self, p: LegacyParams, conn: Connection) -> Ok:
        return Ok()

    async def _hook_status(self, p: LegacyParams, conn: Connection) -> HookStatusResult:
        runner = self.sup.hooks
        names = runner.names() if runner is not None else []
        if not names:
            return HookStatusResult(enabled=False, hooks=[], message="ccxd has no hooks configured")
        errors = len(runner.registry.errors) if runner is not None else 0
        message = f"{len(names)} hooks loaded" + (f", {errors} failed to load" if errors else "")
        return HookStatusResult(enabled=True, hooks=names, message=message)


def _decode_params(method: str, params: msgspec.Raw | None) -> Struct:
    """Decode legacy params; unknown members are ignored, as cc_executor did."""
    raw = b"{}" if params is None else bytes(params)
    if raw.strip() == b"null":
        raw = b"{}"
    if raw.lstrip()[:1] == b"[":
        raise ValueError("params must be an object (by-name), not an array - at `$.params`")
    try:
        return msgspec.json.decode(raw, type=LEGACY_METHODS[method][0])
    except RecursionError:
        raise ValueError("params are nested too deeply - at `$.params`") from None
    except msgspec.ValidationError as exc:
        text, sep, path = str(exc).rpartition(" - at `$")
        if sep:
            raise ValueError(f"{text} - at `$.params{path}") from None
        raise ValueError(f"{exc} - at `$.params`") from None


_LEGACY_CODES: dict[int, int] = {
    ErrorCode.INVALID_PARAMS: ErrorCode.INVALID_PARAMS,
    ErrorCode.INTERNAL_ERROR: ErrorCode.INTERNAL_ERROR,
    ErrorCode.HOOK_REFUSED: COMMAND_NOT_ALLOWED,
    ErrorCode.JOB_NOT_ACTIVE: PROCESS_NOT_FOUND,
    ErrorCode.JOB_NOT_FOUND: PROCESS_NOT_FOUND,
}
"""ccxd's error code → cc_executor's, on the legacy methods; any other is -32603 (its "failed")."""


def _legacy_error(exc: RpcError) -> tuple[int, Any]:
    """cc_executor's code for a native error; ``data.ccxd_code`` keeps ccxd's own when they differ."""
    code = int(exc.code)
    legacy = _LEGACY_CODES.get(code, ErrorCode.INTERNAL_ERROR)
    if legacy == code:
        return code, exc.data
    data = dict(exc.data) if isinstance(exc.data, dict) else {}
    data["ccxd_code"] = code
    return int(legacy), data


def _stop_follower(conn: Connection, session: _Session) -> None:
    if session.follower is not None and session.job is not None:
        conn.cancel_subscription(_SUBSCRIPTION_PREFIX + session.job.id)
        session.follower.cancel()
    session.follower = None


async def _started(job: Job) -> None:
    """Return once ``job`` has a process or has finished without one."""
    if job.pid is not None or job.finished:
        return
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if (job.pid is not None or job.finished) and not fut.done():
            fut.set_result(None)

    job.add_listener(wake)
    try:
        await fut
    finally:
        job.remove_listener(wake)


# cc_executor's names for what went wrong with a Claude run (its adaptive runner keys on them).
_CLAUDE_ERRORS: dict[str, tuple[str, str]] = {
    "token_limit": ("error.token_limit_exceeded", "token_limit"),
    "usage_limit": ("error.rate_limit_exceeded", "usage_limit"),
    "rate_limit": ("error.rate_limit_exceeded", "rate_limit_429"),
    "overloaded": ("error.service_unavailable", "overloaded"),
    "api_error": ("error.service_unavailable", "api_error"),
    "network": ("error.service_unavailable", "network"),
    "auth": ("error.authentication_failed", "auth"),
}


def claude_error_notification(job: Job, session_id: str = "") -> bytes | None:
    """cc_executor's ``error.*`` notification for a Claude job that failed, or None."""
    from ccxd.claude.monitor import monitor_of
    from ccxd.claude.retry_runner import failure_of

    failure = failure_of(job)
    if failure is None or failure.error_class not in _CLAUDE_ERRORS:
        return None
    method, error_type = _CLAUDE_ERRORS[failure.error_class]
    monitor = monitor_of(job)
    verdict = monitor.classification if monitor is not None else None
    text = str(getattr(verdict, "message", None) or job.error or failure.error_class)
    retry = job.retry_notice
    notice = ClaudeErrorNotice(
        session_id=session_id,
        job_id=job.id,
        error_type=error_type,
        message=text.splitlines()[0][:300] if text else failure.error_class,
        error_text=text[:2000],
        recoverable=retry is not None,
        next_job_id=retry.next_job_id if retry else None,
        retry_after=retry.delay if retry else None,
    )
    if failure.error_class == "token_limit":
        notice.limit = failure.token_limit
        notice.suggestion = "Retry with a more concise prompt or a larger CLAUDE_CODE_MAX_OUTPUT_TOKENS"
    if failure.error_class == "usage_limit" and failure.resets_at is not None:
        notice.reset_timestamp = int(failure.resets_at)
    return encode(legacy_notification(method, notice))


def final_notification(job: Job) -> bytes:
    """``process.completed`` (or ``process.failed``) for a finished job."""
    reason = job.reason
    if reason in (JobReason.FAILED_TO_START, JobReason.LOST) or job.pid is None:
        err = job.error or f"the job ended without running ({reason})"
        return encode(legacy_notification("process.failed", ProcessError(error=err, job_id=job.id)))
    code = shell_exit_code(reason, job.exit_code, job.signal)
    done = ProcessCompleted(
        status="completed" if reason is JobReason.EXITED and code == 0 else "failed",
        pid=job.pid,
        pgid=job.pgid,
        exit_code=code,
        execution_time=job.duration or 0.0,
        job_id=job.id,
        reason=str(reason),
        signal=job.signal,
    )
    return encode(legacy_notification("process.completed", done))


async def _follow(
    conn: Connection,
    job: Job,
    session_id: str = "",
    next_attempt: Callable[[str], Job | None] = lambda job_id: None,
) -> None:
    """Send a job's ``process.*`` notifications at the connection's pace.

    A Claude job that ccxd retries goes on in its next attempt: the client gets
    the failed attempt's ``error.*`` notice (``recoverable``, ``next_job_id``),
    then the next attempt's output, and one ``process.completed`` at the end of
    the chain, as from a ``claude -p`` that retried by itself.
    """
    try:
        announce = True
        current: Job | None = job
        while current is not None:
            following = await _pump(conn, current, session_id, announce)
            current = next_attempt(following) if following else None
            if current is not None:
                await _started(current)  # it may wait out a backoff or a usage limit
            announce = False
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("following job %s for a cc_executor client failed", job.id)
        conn.send(encode(legacy_notification("process.error", ProcessError(error=str(exc), job_id=job.id))))


async def _pump(conn: Connection, job: Job, session_id: str = "", announce: bool = True) -> str | None:
    """Send ``job``'s output a line a message; the id of its next attempt, if ccxd retries it."""
    loop = asyncio.get_running_loop()
    changed: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not changed.done():
            changed.set_result(None)

    job.add_listener(wake)
    out = job.log
    seq = 0
    offset = 0
    lost = False
    # One splitter per stream: a partial stdout line is not ended by stderr output.
    splitters = [LineSplitter() for _ in STREAMS]

    def send(stream: int, line: bytes) -> None:
        nonlocal lost
        text = line.decode("utf-8", errors="replace")
        params = ProcessOutput(type=STREAMS[stream], data=text, job_id=job.id, truncated=lost)
        conn.send(encode(legacy_notification("process.output", params)))
        lost = False

    def flush() -> None:
        for stream, splitter in enumerate(splitters):
            tail = splitter.flush()
            if tail:
                send(stream, tail)

    try:
        if announce:
            started = ProcessStatus("started", job.pid, job.pgid, job.id)
            conn.send(encode(legacy_notification("process.started", started)))
        while not conn.closing:
            while seq < out.next_seq:
                await conn.sink.drain()
                if conn.closing:
                    return None
                chunk = out.get(seq)
                if chunk is None:  # evicted from memory and not in the spool
                    seq = out.first_memory_seq
                    resume = out.available_offset(seq)
                    if resume > offset:  # a gap: what was held ends before it
                        flush()
                        lost = True
                    offset = max(offset, resume)
                    continue
                skip = max(0, offset - chunk.offset)
                if skip < len(chunk.data):
                    data = chunk.data[skip:] if skip else chunk.data
                    for line in splitters[chunk.stream].feed(data):
                        send(chunk.stream, line)
                offset = chunk.end
                seq += 1
            if job.finished and seq >= out.next_seq:
                flush()  # a last line without its newline
                notice = claude_error_notification(job, session_id)
                if notice is not None:
                    conn.send(notice)
                if job.retried_by is not None:
                    return job.retried_by
                conn.send(final_notification(job))
                return None
            await changed
            changed = loop.create_future()
        return None  # the client left
    finally:
        job.remove_listener(wake)
