"""``ccxctl run``: start a job, stream its output, exit with its exit code.

Exit codes: the job's own; 128+N when a signal N killed it; 124 when it hit its
timeout or idle timeout (like ``timeout(1)``); 130 after Ctrl-C (which cancels
the job and waits for it to stop); 127 when it could not start; 69 when the
daemon is not running; 77 when it refused us (token missing or wrong).

On a Unix socket this imports neither msgspec, the protocol's Structs, pathlib
nor typing: starting a short job should cost little more than starting Python
(docs/decisions/25-cli-start.md).  It speaks JSON with the names of
:mod:`ccxd.wire` through :mod:`ccxd.client.blocking`, and takes the output as
binary frames, written out as they come.
"""

from __future__ import annotations

import os
import sys

from ccxd import wire
from ccxd.client.errors import ClientError, ConnectionLost

TYPE_CHECKING = False  # typing's own, without importing typing
if TYPE_CHECKING:
    import signal
    from collections.abc import Mapping
    from typing import Any, BinaryIO

    from ccxd.client.blocking import BlockingConnection, Message
    from ccxd.protocol import JobInfo
else:  # signal.py's functions and numbers without its enums (a millisecond at every start)
    import _signal as signal

__all__ = [
    "EX_NOPERM",
    "EX_NOT_RUNNING",
    "RunOptions",
    "chunk_bytes",
    "default_socket_path",
    "env_from",
    "exit_code_for",
    "exit_code_for_error",
    "finish_note",
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


class RunOptions:
    """Everything ``ccxctl run`` was asked to do (equal when every option is).

    A plain class, not a msgspec Struct or a dataclass: both cost milliseconds
    to import, at every ``ccxctl run``.
    """

    __slots__ = (
        "after",
        "after_any",
        "argv",
        "command",
        "cpus",
        "cwd",
        "detach",
        "env",
        "group",
        "idle_timeout",
        "json",
        "memory",
        "node",
        "pids",
        "priority",
        "retry_on_node_loss",
        "session",
        "shell",
        "socket",
        "tags",
        "timeout",
        "token_file",
        "url",
        "where",
        "worktree",
    )

    def __init__(
        self,
        *,
        command: list[str],
        argv: bool = False,
        detach: bool = False,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        shell: str | None = None,
        session: str | None = None,
        tags: list[str] | None = None,
        memory: str | None = None,
        cpus: float | None = None,
        pids: int | None = None,
        group: str | None = None,
        priority: str | int = "normal",
        after: list[str] | None = None,
        after_any: list[str] | None = None,
        worktree: bool = False,
        where: dict[str, str] | None = None,
        node: str | None = None,
        retry_on_node_loss: bool = False,
        json: bool = False,
        socket: str | None = None,
        url: str | None = None,
        token_file: str | None = None,
    ) -> None:
        """Options as the typer command and the fast path read them (unset lists and maps: empty)."""
        self.command = command
        self.argv = argv
        self.detach = detach
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.cwd = cwd
        self.env = env or {}
        self.shell = shell
        self.session = session
        self.tags = tags or []
        self.memory = memory
        self.cpus = cpus
        self.pids = pids
        self.group = group
        self.priority = priority
        self.after = after or []
        self.after_any = after_any or []
        self.worktree = worktree
        self.where = where or {}
        self.node = node
        self.retry_on_node_loss = retry_on_node_loss
        self.json = json
        self.socket = socket
        self.url = url
        self.token_file = token_file

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunOptions):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"RunOptions({', '.join(f'{name}={getattr(self, name)!r}' for name in self.__slots__)})"

    def start_params(self, remote: bool = False) -> dict[str, object]:
        """The ``job.start`` params these options ask for, as JSON (StartParams' fields; unset ones left out).

        Locally the job runs where ccxctl was started (a relative ``--cwd`` is
        resolved here) and its output comes as binary frames, unless ``--json``
        shows the notifications themselves; a remote daemon gets ``--cwd`` as
        given, or none (its home).
        """
        cwd = self.cwd
        if not remote:
            cwd = os.path.abspath(cwd) if cwd is not None else os.getcwd()
        params: dict[str, object] = {
            "command": list(self.command) if self.argv else " ".join(self.command),
            "cwd": cwd,
            "env": self.env,
            "shell": self.shell,
            "timeout": self.timeout,
            "idle_timeout": self.idle_timeout,
            "session": self.session,
            "tags": self.tags,
            "subscribe": not self.detach,
            "binary": not (self.detach or self.json or remote),
            "memory": self.memory,
            "cpus": self.cpus,
            "pids": self.pids,
            "group": self.group,
            "priority": self.priority,
            "after": self.after,
            "after_any": self.after_any,
            "worktree": self.worktree,
            "where": self.where,
            "node": self.node,
            "retry_on_node_loss": self.retry_on_node_loss,
        }
        # Only what differs from the protocol's defaults: a daemon older than a field still
        # takes a request that leaves it out (it refuses unknown fields).
        return {
            name: value
            for name, value in params.items()
            if value is not None and value is not False and value != {} and value != []  # 0 is sent
        }


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
    return EX_USAGE if code == wire.INVALID_PARAMS else 1


def exit_code_for(job: JobInfo, interrupted: bool = False) -> int:
    """The exit code ``ccxctl run`` reports for a finished job."""
    return _exit_code(job.reason, job.exit_code, job.signal, interrupted)


def _exit_code(reason: str | None, exit_code: int | None, signum: int | None, interrupted: bool) -> int:
    if interrupted:
        return EX_INTERRUPTED
    if reason in ("failed_to_start", "dependency_failed"):
        return EX_CANNOT_START
    code = wire.shell_exit_code(reason, exit_code, signum)
    return code if code is not None else 1


def finish_note(job: Mapping[str, Any]) -> str | None:
    """What ``ccxctl run`` says on stderr of how a job (``JobInfo`` as JSON) ended, if anything (no I/O)."""
    reason = job.get("reason")
    error = job.get("error")
    if reason == "failed_to_start":
        return f"job {job['id']} could not start: {error}"
    if reason == "dependency_failed":
        return f"job {job['id']} did not run: {error}"
    if reason == "timeout" and job.get("timeout_silence") is not None:
        return f"job {job['id']} stopped: timeout: {error or 'estimated timeout'}"
    if reason in ("timeout", "idle_timeout"):
        limit = job.get("timeout") if reason == "timeout" else job.get("idle_timeout")
        return f"job {job['id']} stopped: {reason.replace('_', ' ')} after {limit:g}s"
    if reason == "oom":
        return f"job {job['id']} killed: {error}"
    return None


def default_socket_path() -> str:
    """Where the daemon listens by default, as :func:`ccxd.client.connection.default_socket` says.

    Spelled out here without pathlib (ccxctl run's start); a test checks both agree.
    """
    env = os.environ.get("CCXD_SOCKET")
    if env:
        return env
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isabs(base):
        return os.path.join(base, "ccxd", "ccxd.sock")
    return f"/tmp/ccxd-{os.getuid()}/ccxd.sock"


def _say(message: str) -> None:
    sys.stderr.write(f"ccxctl: {message}\n")
    sys.stderr.flush()


def not_running_hint(detail: str) -> str:
    """The one line printed when there is no daemon."""
    return f"{detail}; start it with `ccxd` (or `systemctl --user start ccxd`)"


def run_job(opts: RunOptions) -> int:
    """Run the job and return the exit code for ``ccxctl``."""
    url = opts.url or (os.environ.get("CCXD_URL") if not opts.socket else None)
    path: str | None = None
    if url:
        from ccxd.client.urls import BadAddress, parse_address

        try:
            address = parse_address(url)
        except BadAddress as exc:
            _say(str(exc))
            return EX_USAGE
        if address.kind == "ws":
            return _run_remote(opts, address.where)
        path = address.where
    from ccxd.client.blocking import BlockingConnection
    from ccxd.client.errors import DaemonNotRunning, UntrustedDaemon

    try:
        conn = BlockingConnection(path or opts.socket or default_socket_path())
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
            try:  # noqa: SIM105 - contextlib is one more import at every start
                conn.call(wire.JOB_CANCEL, {"job_id": started[-1]})
            except ClientError:  # it ended meanwhile, or the daemon went
                pass
        return EX_BROKEN_PIPE


def _follow(conn: BlockingConnection, opts: RunOptions, started: list[str]) -> int:
    """Start the job and copy its output until it ends; ``started`` gets the ids followed."""
    start_id = conn.send(wire.JOB_START, opts.start_params())
    streams: tuple[BinaryIO, BinaryIO] = (sys.stdout.buffer, sys.stderr.buffer)
    job_id: str | None = None
    retry: Message | None = None  # a failed Claude attempt is followed by its next attempt
    interrupted = False
    cancel_sent = False
    # Ctrl-C arrives as a byte on a pipe, never as an exception in the middle of a read.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGINT, lambda *_: None)
    while True:
        msg = conn.next_message(wake_r)
        if isinstance(msg, int):
            if msg != signal.SIGINT:
                continue
            if cancel_sent or (interrupted and job_id is None):
                return EX_INTERRUPTED  # a second Ctrl-C leaves; the daemon finishes the cancel
            interrupted = True
            if job_id is not None:
                cancel_sent = True
                _say(f"cancelling job {job_id}")
                conn.send(wire.JOB_CANCEL, {"job_id": job_id})
            continue
        if msg is None:
            lost = f"lost the connection to ccxd at {conn.path}: the daemon closed the connection"
            _say(f"{lost} (`ccxctl attach {job_id}` follows the job once ccxd is back)" if job_id else lost)
            return 1
        if not isinstance(msg, dict):  # a binary output frame: the bytes as the job wrote them
            try:
                code, data = wire.output_frame_data(msg)
            except ValueError as exc:
                lost = f"ccxd at {conn.path} sent something that is not its protocol: {exc}"
                raise ConnectionLost(lost) from None
            streams[code].write(data)
            streams[code].flush()
            continue
        msg_id = msg.get("id")
        if msg_id is None and "error" in msg:
            _say(msg["error"]["message"])  # turned away (max_connections, no descriptors)
            return 1
        if msg_id == start_id:
            if "error" in msg:
                _say(msg["error"]["message"])
                return exit_code_for_error(msg["error"]["code"])
            info = msg.get("result")
            if not isinstance(info, dict) or not isinstance(info.get("id"), str):
                raise ConnectionLost(f"ccxd at {conn.path}: unexpected reply to job.start: {str(info)[:80]}")
            job_id = info["id"]
            started.append(job_id)
            if opts.detach:
                print(job_id)
                return 0
            if interrupted:  # Ctrl-C came before the daemon had answered
                cancel_sent = True
                _say(f"cancelling job {job_id}")
                conn.send(wire.JOB_CANCEL, {"job_id": job_id})
            continue
        method, params = msg.get("method"), msg.get("params")
        if not isinstance(method, str) or not isinstance(params, dict):
            if "error" in msg and msg_id is not None and not isinstance(msg_id, int):
                _say(msg["error"]["message"])
            continue
        if opts.json:
            _emit_event(method, params)
        if method == wire.JOB_OUTPUT:
            if not opts.json:  # output as JSON, though frames were asked for: a daemon that has none
                stream = streams[wire.STREAMS.index(params["stream"])]
                stream.write(chunk_bytes(params))
                stream.flush()
        elif method == wire.JOB_RETRY:
            retry = params
            if not opts.json:
                _say(f"job {params['job_id']}: {params['reason']} (job {params['next_job_id']})")
        elif method.startswith(wire.HOOK_PREFIX) and not opts.json:
            hook = params["hook"]
            if hook.get("result") in ("failed", "timeout"):
                _say(f"hook {hook['name']} ({hook['point']}) {hook['result']}: {hook.get('message')}")
        elif method == wire.JOB_FINISHED:
            job = params["job"]
            if retry is not None and retry["job_id"] == job["id"] and not interrupted:
                job_id = retry["next_job_id"]
                started.append(job_id)
                retry = None
                conn.send(wire.JOB_SUBSCRIBE, {"job_id": job_id, "binary": not opts.json})
                continue
            note = None if opts.json else finish_note(job)
            if note:
                _say(note)
            return _exit_code(job.get("reason"), job.get("exit_code"), job.get("signal"), interrupted)


def chunk_bytes(chunk: Mapping[str, Any]) -> bytes:
    """The bytes a ``job.output`` chunk (as JSON) carries: its text, or its base64 decoded."""
    if chunk.get("encoding") == "base64":
        import base64

        return base64.b64decode(chunk["data"])
    return str(chunk["data"]).encode()


def _emit_event(method: str, params: object) -> None:
    """Print one event as :func:`ccxctl.render.emit_event` does: ``{"event": METHOD, "data": PARAMS}``."""
    import json

    line = json.dumps({"event": method, "data": params}, ensure_ascii=False, separators=(",", ":"))
    # A lone surrogate (escaped in the daemon's JSON) goes out as the same \\uXXXX escape.
    sys.stdout.buffer.write(line.encode("utf-8", "backslashreplace") + b"\n")
    sys.stdout.flush()


def _run_remote(opts: RunOptions, url: str) -> int:
    """``run`` over a WebSocket URL, through the async client library."""
    import asyncio

    from ccxctl.render import emit_event
    from ccxd.client import AccessDenied, DaemonNotRunning, RemoteError, UntrustedDaemon, connect
    from ccxd.protocol import JobFinished, OutputChunk

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
            fields = opts.start_params(remote=True)
            command = fields.pop("command")
            try:
                job = await client.start(command, **fields)  # type: ignore[arg-type]
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
