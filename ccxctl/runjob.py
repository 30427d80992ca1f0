"""``ccxctl run``: start a job, stream its output, exit with its exit code.

Exit codes: the job's own; 128+N when a signal N killed it; 124 when it hit its
timeout or idle timeout (like ``timeout(1)``); 130 after Ctrl-C (which cancels
the job and waits for it to stop); 127 when it could not start; 69 when the
daemon is not running; 77 when it refused us (token missing or wrong).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import msgspec
from msgspec import UNSET, Struct

from ccxctl.render import emit_event, emit_event_raw
from ccxd.client.errors import ClientError, ConnectionLost, RemoteError
from ccxd.protocol import (
    ErrorCode,
    HookEvent,
    JobFinished,
    JobInfo,
    JobRef,
    JobRetry,
    OutputChunk,
    StartParams,
    SubscribeParams,
    shell_exit_code,
)

if TYPE_CHECKING:
    from ccxd.client.blocking import BlockingConnection

__all__ = [
    "EX_NOPERM",
    "EX_NOT_RUNNING",
    "RunOptions",
    "env_from",
    "exit_code_for",
    "exit_code_for_error",
    "parse_env",
    "run_job",
]

EX_USAGE = 2  # as for a bad option: a daemon address none of ccxctl's forms
EX_NOT_RUNNING = 69
EX_NOPERM = 77  # sysexits: the daemon refused us (token missing or wrong)
EX_TIMEOUT = 124
EX_CANNOT_START = 127
EX_INTERRUPTED = 130
EX_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a filter whose reader left exits with


def parse_env(items: list[str], environ: Mapping[str, str], where: str = "--env") -> dict[str, str]:
    """``KEY=VALUE`` items, and bare ``NAME``s valued from ``environ`` (no I/O).

    A bare name keeps a secret out of the command line (``ps`` shows it to every
    user): ``API_KEY=… ccxctl run --env API_KEY …``.  Raises ValueError.
    """
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or "\0" in item:  # the value is not repeated: it may be a secret
            raise ValueError(
                f"{where}: expected KEY=VALUE or NAME, got an entry without a name or with a NUL"
            )
        if not sep:
            if key not in environ:
                raise ValueError(f"{where}: {key} is not set in ccxctl's environment (give KEY=VALUE)")
            value = environ[key]
        env[key] = value
    return env


def env_from(items: list[str], files: list[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The job's ``env``: each ``--env-file`` in turn, then ``--env`` items over them.

    An env file holds ``KEY=VALUE`` lines taken verbatim (no quotes removed), bare
    ``NAME`` lines valued from ccxctl's environment, blank lines and ``#``
    comments, as ``docker run --env-file`` reads them.  Raises ValueError.
    """
    env: dict[str, str] = {}
    for name in files:
        try:
            with open(name, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--env-file {name}: {getattr(exc, 'strerror', None) or exc}") from None
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        env.update(parse_env(lines, environ, f"--env-file {name}"))
    env.update(parse_env(items, environ))
    return env


class RunOptions(Struct, kw_only=True):
    """Everything ``ccxctl run`` was asked to do."""

    command: list[str]
    argv: bool = False
    detach: bool = False
    timeout: float | None = None
    idle_timeout: float | None = None
    cwd: str | None = None
    env: dict[str, str] = {}
    shell: str | None = None
    session: str | None = None
    tags: list[str] = []
    memory: str | None = None
    cpus: float | None = None
    pids: int | None = None
    group: str | None = None
    priority: str | int = "normal"
    after: list[str] = []
    after_any: list[str] = []
    worktree: bool = False
    where: dict[str, str] = {}
    node: str | None = None
    retry_on_node_loss: bool = False
    json: bool = False
    socket: str | None = None
    url: str | None = None
    token_file: str | None = None

    def start_params(self, remote: bool = False) -> StartParams:
        """The ``job.start`` params these options ask for.

        Locally the job runs where ccxctl was started (a relative ``--cwd`` is
        resolved here); a remote daemon gets ``--cwd`` as given, or none (its home).
        """
        command: str | list[str] = list(self.command) if self.argv else " ".join(self.command)
        cwd = self.cwd
        if not remote:
            cwd = os.path.abspath(cwd) if cwd is not None else os.getcwd()
        return StartParams(
            command=command,
            cwd=cwd,
            env=self.env,
            shell=self.shell,
            timeout=self.timeout,
            idle_timeout=self.idle_timeout,
            session=self.session,
            tags=self.tags,
            subscribe=not self.detach,
            memory=self.memory,
            cpus=self.cpus,
            pids=self.pids,
            group=self.group,
            priority=self.priority,  # type: ignore[arg-type]  # checked by the daemon (or typer)
            after=self.after,
            after_any=self.after_any,
            worktree=self.worktree,
            where=self.where,
            node=self.node,
            retry_on_node_loss=self.retry_on_node_loss,
        )


def parse_priority(text: str) -> str | int:
    """``high``, ``normal``, ``low`` or a number (-1000..1000); ValueError otherwise."""
    word = text.strip().lower()
    if word in ("high", "normal", "low"):
        return word
    try:
        number = int(word)
    except ValueError:
        raise ValueError(f"priority {text!r}: expected high, normal, low or a number") from None
    if not -1000 <= number <= 1000:
        raise ValueError(f"priority {text!r}: a number from -1000 to 1000")
    return number


def exit_code_for_error(code: int) -> int:
    """The exit code for a JSON-RPC error: params the daemon refused are a usage error (2)."""
    return EX_USAGE if code == ErrorCode.INVALID_PARAMS else 1


def exit_code_for(job: JobInfo, interrupted: bool = False) -> int:
    """The exit code ``ccxctl run`` reports for a finished job."""
    if interrupted:
        return EX_INTERRUPTED
    if job.reason in ("failed_to_start", "dependency_failed"):
        return EX_CANNOT_START
    code = shell_exit_code(job.reason, job.exit_code, job.signal)
    return code if code is not None else 1


def _socket_path(opts: RunOptions) -> Path:
    if opts.socket:
        return Path(opts.socket)
    env = os.environ.get("CCXD_SOCKET")
    if env:
        return Path(env)
    from ccxd import paths

    return paths.runtime_dir() / "ccxd.sock"


def _say(message: str) -> None:
    sys.stderr.write(f"ccxctl: {message}\n")
    sys.stderr.flush()


def not_running_hint(detail: str) -> str:
    """The one line printed when there is no daemon."""
    return f"{detail}; start it with `ccxd` (or `systemctl --user start ccxd`)"


def run_job(opts: RunOptions) -> int:
    """Run the job and return the exit code for ``ccxctl``."""
    url = opts.url or (os.environ.get("CCXD_URL") if not opts.socket else None)
    path: Path | None = None
    if url:
        from ccxd.client.urls import BadAddress, parse_address

        try:
            address = parse_address(url)
        except BadAddress as exc:
            _say(str(exc))
            return EX_USAGE
        if address.kind == "ws":
            return _run_remote(opts, address.where)
        path = Path(address.where)
    from ccxd.client.blocking import BlockingConnection
    from ccxd.client.errors import ClientError, DaemonNotRunning, UntrustedDaemon

    if path is None:
        path = _socket_path(opts)
    try:
        conn = BlockingConnection(path)
    except DaemonNotRunning as exc:
        _say(not_running_hint(str(exc)))
        return EX_NOT_RUNNING
    except UntrustedDaemon as exc:
        _say(str(exc))
        return EX_NOPERM
    except ClientError as exc:
        _say(str(exc))
        return 1
    try:
        return _stream(conn, opts)
    except ConnectionLost as exc:
        _say(str(exc))
        return 1
    finally:
        conn.close()


def _stream(conn: BlockingConnection, opts: RunOptions) -> int:
    started: list[str] = []
    try:
        return _follow(conn, opts, started)
    except ConnectionLost as exc:
        if started:  # under its shim the job outlives the daemon: say how to follow it again
            again = f"`ccxctl attach {started[-1]}` follows the job once ccxd is back"
            raise ConnectionLost(f"{exc} ({again})") from None
        raise
    except BrokenPipeError:
        # Nobody reads any more (`| head -1`): end the job as SIGPIPE would end it
        # outside ccxd, and leave quietly like any Unix filter.
        if started and not opts.detach:
            # Wait for the answer: closing at once with output unread resets the
            # connection, and the daemon could drop it before reading the cancel.
            with contextlib.suppress(ClientError):  # it ended meanwhile, or the daemon went
                conn.call("job.cancel", JobRef(started[-1]))
        return EX_BROKEN_PIPE


def _follow(conn: BlockingConnection, opts: RunOptions, started: list[str]) -> int:
    """Start the job and copy its output until it ends; ``started`` gets the ids followed."""
    start_id = conn.send("job.start", opts.start_params())
    out: BinaryIO = sys.stdout.buffer
    err: BinaryIO = sys.stderr.buffer
    chunk_decoder: msgspec.json.Decoder[OutputChunk] | None = None  # made at the first output
    job_id: str | None = None
    retry: JobRetry | None = None  # a failed Claude attempt is followed by its next attempt
    interrupted = False
    cancel_sent = False
    # Ctrl-C arrives as a byte on a pipe, never as an exception in the middle of a read.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGINT, lambda *_: None)
    while True:
        item = conn.next_message(wake_r)
        if isinstance(item, int):
            if item != signal.SIGINT:
                continue
            if cancel_sent or (interrupted and job_id is None):
                return EX_INTERRUPTED  # a second Ctrl-C leaves; the daemon finishes the cancel
            interrupted = True
            if job_id is not None:
                cancel_sent = True
                _say(f"cancelling job {job_id}")
                conn.send("job.cancel", JobRef(job_id))
            continue
        if item is None:
            lost = f"lost the connection to ccxd at {conn.path}: the daemon closed the connection"
            _say(f"{lost} (`ccxctl attach {job_id}` follows the job once ccxd is back)" if job_id else lost)
            return 1
        _, msg = item
        if msg.id is None and msg.error is not UNSET:
            _say(msg.error.message)  # the daemon turned the connection away (max_connections, no descriptors)
            return 1
        if msg.id == start_id:
            answer = conn.core.answer(msg)
            assert answer is not None
            if isinstance(answer.error, RemoteError):
                _say(answer.error.message)
                return exit_code_for_error(answer.error.code)
            if answer.error is not None:
                raise ConnectionLost(f"ccxd at {conn.path}: {answer.error}")
            info: JobInfo = answer.result
            job_id = info.id
            started.append(job_id)
            if opts.detach:
                print(job_id)
                return 0
            if interrupted:  # Ctrl-C came before the daemon had answered
                cancel_sent = True
                _say(f"cancelling job {job_id}")
                conn.send("job.cancel", JobRef(job_id))
            continue
        if msg.method is UNSET or msg.params is UNSET:
            if msg.error is not UNSET and msg.id is not None and not isinstance(msg.id, int):
                _say(msg.error.message)
            continue
        if opts.json:
            emit_event_raw(msg.method, bytes(msg.params))
        if msg.method == "job.output":
            if opts.json:
                continue
            if chunk_decoder is None:
                chunk_decoder = msgspec.json.Decoder(OutputChunk)
            chunk = chunk_decoder.decode(msg.params)
            stream = out if chunk.stream == "stdout" else err
            stream.write(chunk.raw())
            stream.flush()
        elif msg.method == "job.retry":
            retry = msgspec.json.decode(msg.params, type=JobRetry)
            if not opts.json:
                _say(f"job {retry.job_id}: {retry.reason} (job {retry.next_job_id})")
        elif msg.method.startswith("hook.") and not opts.json:
            hook = msgspec.json.decode(msg.params, type=HookEvent).hook
            if hook.result in ("failed", "timeout"):
                _say(f"hook {hook.name} ({hook.point}) {hook.result}: {hook.message}")
        elif msg.method == "job.finished":
            job = msgspec.json.decode(msg.params, type=JobFinished).job
            if retry is not None and retry.job_id == job.id and not interrupted:
                job_id = retry.next_job_id
                started.append(job_id)
                retry = None
                conn.send("job.subscribe", SubscribeParams(job_id=job_id))
                continue
            if job.reason == "failed_to_start" and not opts.json:
                _say(f"job {job.id} could not start: {job.error}")
            elif job.reason == "dependency_failed" and not opts.json:
                _say(f"job {job.id} did not run: {job.error}")
            elif job.reason == "timeout" and job.timeout_silence is not None and not opts.json:
                _say(f"job {job.id} stopped: timeout: {job.error or 'estimated timeout'}")
            elif job.reason in ("timeout", "idle_timeout") and not opts.json:
                limit = job.timeout if job.reason == "timeout" else job.idle_timeout
                _say(f"job {job.id} stopped: {job.reason.replace('_', ' ')} after {limit:g}s")
            elif job.reason == "oom" and not opts.json:
                _say(f"job {job.id} killed: {job.error}")
            return exit_code_for(job, interrupted)


def _run_remote(opts: RunOptions, url: str) -> int:
    """``run`` over a WebSocket URL, through the async client library."""
    import asyncio

    from ccxd.client import AccessDenied, ClientError, DaemonNotRunning, UntrustedDaemon, connect

    async def go() -> int:
        try:
            client = await connect(url, token_file=opts.token_file)
        except DaemonNotRunning as exc:
            _say(not_running_hint(str(exc)))
            return EX_NOT_RUNNING
        except (AccessDenied, UntrustedDaemon) as exc:
            _say(str(exc))
            return EX_NOPERM
        except ClientError as exc:
            _say(str(exc))
            return 1
        try:
            params = opts.start_params(remote=True)
            options = {f: getattr(params, f) for f in params.__struct_fields__ if f != "command"}
            try:
                job = await client.start(params.command or [], **options)
            except RemoteError as exc:  # refused as on the Unix socket: its words, its exit code
                _say(exc.message)
                return exit_code_for_error(exc.code)
            if opts.detach:
                print(job.id)
                return 0
            interrupted: list[bool] = []
            pending: set[asyncio.Future[JobInfo]] = set()

            def cancel() -> None:
                if interrupted:
                    raise KeyboardInterrupt
                interrupted.append(True)
                _say(f"cancelling job {job.id}")
                fut = asyncio.ensure_future(client.cancel(job.id))
                pending.add(fut)
                fut.add_done_callback(pending.discard)
                # A cancel lost with the connection: the job's events still say how it ended.
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())

            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, cancel)
            try:
                async for ev in client.events(job.id):
                    if opts.json:
                        emit_event(ev)
                    if isinstance(ev, OutputChunk) and not opts.json:
                        stream = sys.stdout.buffer if ev.stream == "stdout" else sys.stderr.buffer
                        stream.write(ev.raw())
                        stream.flush()
                    elif isinstance(ev, JobFinished):
                        return exit_code_for(ev.job, bool(interrupted))
            except BrokenPipeError:  # the reader left: end the job, as on the Unix socket
                await client.cancel(job.id)
                return EX_BROKEN_PIPE
            return 1
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except ClientError as exc:  # the connection broke after it was made
        _say(str(exc))
        return 1
