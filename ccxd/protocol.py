"""Every message ccxd speaks, as msgspec Structs.

This module is the single definition of the wire protocol (JSON-RPC 2.0). The
daemon, the client library and ``ccxctl`` all import it; nothing else builds
messages.  It performs no I/O.

Conventions:

* Methods are named ``<area>.<verb>``; :data:`METHODS` maps each name to its
  params and result types, :data:`NOTIFICATIONS` each server notification to its
  params type.  ``docs/protocol.md`` documents every entry (a test checks).
* Output bytes travel in :class:`OutputChunk`.  When a chunk is valid UTF-8 its
  ``data`` is that text and ``encoding`` is ``"utf-8"``; otherwise ``data`` is the
  base64 of the raw bytes and ``encoding`` is ``"base64"``.  A chunk never splits
  a UTF-8 character, so concatenating decoded chunks gives the exact bytes.
* Offsets are *combined* byte offsets: the position of a chunk's first byte in the
  job's output log, where stdout and stderr bytes are interleaved in the order
  ccxd read them.  Subscribing with ``from_offset`` resumes exactly there.
"""

from __future__ import annotations

import base64
import enum
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

__all__ = [
    "JSONRPC_VERSION",
    "METHODS",
    "NOTIFICATIONS",
    "ErrorCode",
    "ErrorObject",
    "ErrorResponse",
    "JobInfo",
    "JobReason",
    "JobState",
    "Notification",
    "OutputChunk",
    "Request",
    "Response",
]

JSONRPC_VERSION: Final = "2.0"

RequestId = int | str | None


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes: the spec's own, then ccxd's application codes."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # Application errors live in the spec's "server error" range.
    JOB_NOT_FOUND = -32001
    QUEUE_FULL = -32002
    JOB_NOT_ACTIVE = -32003
    UNAUTHORIZED = -32005
    SHUTTING_DOWN = -32006
    HOOK_REFUSED = -32007  # reserved for pre-execution hooks
    STORE_UNAVAILABLE = -32009
    SESSION_NOT_FOUND = -32010


class JobState(enum.StrEnum):
    """Where a job is in its life: queued → starting → running → finished."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"


class JobReason(enum.StrEnum):
    """Why a finished job finished."""

    EXITED = "exited"
    TIMEOUT = "timeout"
    IDLE_TIMEOUT = "idle_timeout"
    CANCELLED = "cancelled"
    KILLED = "killed"
    FAILED_TO_START = "failed_to_start"
    LOST = "lost"


Stream = Literal["stdout", "stderr"]
Encoding = Literal["utf-8", "base64"]
Seconds = Annotated[float, Meta(gt=0, le=366 * 86400)]
TimeoutSeconds = Annotated[float, Meta(ge=0, le=366 * 86400)]


# --------------------------------------------------------------------------
# Envelopes
# --------------------------------------------------------------------------


class Request(Struct, omit_defaults=True):
    """A JSON-RPC request, or a notification when ``id`` is unset."""

    method: str
    jsonrpc: Literal["2.0"]
    params: Raw | UnsetType = UNSET
    id: RequestId | UnsetType = UNSET


class ErrorObject(Struct, omit_defaults=True):
    """The ``error`` member of an error response."""

    code: int
    message: str
    data: Any | UnsetType = UNSET


class Response(Struct):
    """A successful reply."""

    id: RequestId
    result: Any
    jsonrpc: str = JSONRPC_VERSION


class ErrorResponse(Struct):
    """A failed reply."""

    id: RequestId
    error: ErrorObject
    jsonrpc: str = JSONRPC_VERSION


class Notification(Struct):
    """A server → client notification (no ``id``)."""

    method: str
    params: Any
    jsonrpc: str = JSONRPC_VERSION


class OutputNotification(Struct):
    """A ``job.output`` notification decoded in one pass (the client's hot path)."""

    method: Literal["job.output"]
    params: OutputChunk
    jsonrpc: str = JSONRPC_VERSION


OUTPUT_NOTIFICATION_PREFIX: Final = b'{"method":"job.output",'
"""How every ``job.output`` line the daemon sends begins (fields encode in definition order)."""


class Reply(Struct, omit_defaults=True):
    """What a client decodes from the wire before it knows the result type."""

    jsonrpc: str = JSONRPC_VERSION
    id: RequestId | UnsetType = UNSET
    result: Raw | UnsetType = UNSET
    error: ErrorObject | UnsetType = UNSET
    method: str | UnsetType = UNSET
    params: Raw | UnsetType = UNSET


# --------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------


class JobInfo(Struct, omit_defaults=True, kw_only=True):
    """Everything a client can know about one job."""

    id: str
    state: JobState
    command: str | list[str]
    shell: str | None = None
    argv: list[str] = []
    cwd: str = ""
    env: dict[str, str] = {}
    session: str | None = None
    tags: list[str] = []
    timeout: float | None = None
    timeout_basis: str | None = None
    idle_timeout: float | None = None
    reason: JobReason | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    pid: int | None = None
    pgid: int | None = None
    queue_position: int | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    output_bytes: int = 0
    output_cut: bool = False
    node: str = ""
    peer: str = ""


class OutputChunk(Struct, kw_only=True):
    """Up to 64 KiB of one stream's output."""

    job_id: str
    stream: Stream
    seq: int
    offset: int
    data: str
    encoding: Encoding = "utf-8"

    @staticmethod
    def encode_data(raw: bytes) -> tuple[str, Encoding]:
        """Return ``(data, encoding)`` carrying ``raw`` losslessly."""
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"

    def raw(self) -> bytes:
        """The exact bytes this chunk carries."""
        if self.encoding == "base64":
            return base64.b64decode(self.data)
        return self.data.encode("utf-8")


# --------------------------------------------------------------------------
# Method params and results
# --------------------------------------------------------------------------


class StartParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``job.start``: run ``command`` (a shell string, or an argv list without a shell)."""

    command: Annotated[str, Meta(min_length=1)] | Annotated[list[str], Meta(min_length=1)]
    cwd: str | None = None
    env: dict[str, str] = {}
    shell: str | None = None
    timeout: TimeoutSeconds | None = None
    """Wall-clock limit; unset means estimated from history, 0 means none."""
    idle_timeout: Seconds | None = None
    session: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    tags: list[str] = []
    input: str | None = None
    subscribe: bool = False


class JobRef(Struct, forbid_unknown_fields=True):
    """Names one job."""

    job_id: str


class ListParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``job.list``: newest first, optionally filtered."""

    state: JobState | None = None
    session: str | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 100


class JobList(Struct):
    """``job.list`` result."""

    jobs: list[JobInfo]


class SubscribeParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``job.subscribe``: replay output from ``from_offset``, then follow live."""

    job_id: str
    from_offset: Annotated[int, Meta(ge=0)] = 0
    output: bool = True


class SubscribeResult(Struct):
    """``job.subscribe`` result: the job as it is when the subscription starts."""

    job: JobInfo


class ReadParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``job.read``: output chunks from ``offset`` up to ``max_bytes``."""

    job_id: str
    offset: Annotated[int, Meta(ge=0)] = 0
    max_bytes: Annotated[int, Meta(ge=1, le=16 * 1024 * 1024)] = 1024 * 1024


class ReadResult(Struct):
    """``job.read`` result; ``eof`` once the job is finished and all was read."""

    chunks: list[OutputChunk]
    next_offset: int
    eof: bool
    gap: bool = False


class SignalParams(Struct, forbid_unknown_fields=True):
    """``job.signal``: a signal number or name (``TERM``, ``SIGUSR1``, ``9``)."""

    job_id: str
    signal: int | str


class Ok(Struct):
    """A result that only says it worked."""

    ok: bool = True


class PingResult(Struct):
    """``daemon.ping`` result."""

    pong: bool
    time: float


class Listener(Struct):
    """One endpoint the daemon accepts connections on."""

    kind: str
    address: str


class StatusResult(Struct, kw_only=True):
    """``daemon.status`` result."""

    version: str
    pid: int
    node: str
    uptime: float
    jobs: dict[str, int]
    listeners: list[Listener]
    loop_lag_ms: float
    connections: int
    shell: str
    store: str = "memory"


class EmptyParams(Struct, forbid_unknown_fields=True):
    """For methods without parameters."""


class HistoryParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``history.list``: stored jobs newest first, filtered."""

    session: str | None = None
    status: str | None = None
    since: float | None = None
    grep: str | None = None
    node: str | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 50


class StatsParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``history.stats``: duration statistics, for one command or all."""

    command: str | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 100


class SignatureStats(Struct, kw_only=True):
    """Runs of one command signature."""

    signature: str
    count: int
    successes: int
    timeouts: int
    success_rate: float
    p50: float | None
    p95: float | None
    estimate: float | None
    basis: str


class StatsResult(Struct):
    """``history.stats`` result."""

    signatures: list[SignatureStats]


class PruneParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``history.prune``: drop finished jobs older than ``older_than`` seconds or beyond ``keep``."""

    older_than: Annotated[float, Meta(ge=0)] | None = None
    keep: Annotated[int, Meta(ge=0)] | None = None


class PruneResult(Struct):
    """``history.prune`` result."""

    removed: int


class SessionRef(Struct, forbid_unknown_fields=True):
    """Names one session."""

    name: str


class SessionListParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``session.list``: sessions by last activity."""

    limit: Annotated[int, Meta(ge=1, le=10_000)] = 100


class SessionInfo(Struct, kw_only=True):
    """A named group of jobs (``run --session NAME``)."""

    name: str
    created: float
    last_active: float
    jobs: int


class SessionList(Struct):
    """``session.list`` result."""

    sessions: list[SessionInfo]


class SessionDetail(Struct):
    """``session.get`` result: the session and its jobs, newest first."""

    session: SessionInfo
    jobs: list[JobInfo]


# --------------------------------------------------------------------------
# Notification params
# --------------------------------------------------------------------------


class JobQueued(Struct):
    """``job.queued``: the job waits for a slot at ``position`` (1 = next)."""

    job_id: str
    position: int


class JobStarted(Struct):
    """``job.started``: the process is running, with the timeout in force and its basis."""

    job_id: str
    pid: int
    pgid: int
    timeout: float | None = None
    timeout_basis: str | None = None


class JobFinished(Struct):
    """``job.finished``: the final record of the job."""

    job: JobInfo


class OutputGap(Struct):
    """``job.gap``: output in [start, end) is no longer available to this subscriber."""

    job_id: str
    start: int
    end: int
    reason: str


class OutputCut(Struct):
    """``job.output_cut``: the job exceeded its output cap; later output is not kept."""

    job_id: str
    offset: int
    limit: int


METHODS: Final[dict[str, tuple[type[Struct], type[Struct]]]] = {
    "job.start": (StartParams, JobInfo),
    "job.get": (JobRef, JobInfo),
    "job.list": (ListParams, JobList),
    "job.subscribe": (SubscribeParams, SubscribeResult),
    "job.unsubscribe": (JobRef, Ok),
    "job.read": (ReadParams, ReadResult),
    "job.cancel": (JobRef, JobInfo),
    "job.signal": (SignalParams, JobInfo),
    "job.pause": (JobRef, JobInfo),
    "job.resume": (JobRef, JobInfo),
    "history.list": (HistoryParams, JobList),
    "history.stats": (StatsParams, StatsResult),
    "history.prune": (PruneParams, PruneResult),
    "session.list": (SessionListParams, SessionList),
    "session.get": (SessionRef, SessionDetail),
    "daemon.status": (EmptyParams, StatusResult),
    "daemon.ping": (EmptyParams, PingResult),
}

NOTIFICATIONS: Final[dict[str, type[Struct]]] = {
    "job.queued": JobQueued,
    "job.started": JobStarted,
    "job.output": OutputChunk,
    "job.gap": OutputGap,
    "job.output_cut": OutputCut,
    "job.finished": JobFinished,
}


# --------------------------------------------------------------------------
# Codec helpers shared by both ends
# --------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode(message: Struct) -> bytes:
    """Encode one message as compact JSON (no trailing newline)."""
    return _encoder.encode(message)


def notification(method: str, params: Struct) -> Notification:
    """Build a notification, checking that ``method`` is one ccxd defines."""
    if method not in NOTIFICATIONS:
        raise KeyError(method)
    return Notification(method=method, params=params)


def error(req_id: RequestId, code: ErrorCode, message: str, data: Any = UNSET) -> ErrorResponse:
    """Build an error response."""
    return ErrorResponse(id=req_id, error=ErrorObject(code=int(code), message=message, data=data))
