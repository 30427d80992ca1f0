"""The daemon's configuration: one typed object, every default in one place.

Values come, lowest precedence first, from the defaults below, the TOML file
(``$XDG_CONFIG_HOME/ccxd/config.toml`` or ``--config PATH``), the legacy
cc_executor environment names (:data:`ENV_ALIASES`) and ``CCXD_<KEY>``
environment variables.  :func:`load` records where each value came from so
``ccxd --print-config`` can say so.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import stat
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import msgspec
from msgspec import Meta, Struct

from ccxd import paths
from ccxd.protocol import LABEL_PATTERN, MAX_LABELS, NODE_NAME_PATTERN, SIZE_PATTERN, HookMatch, Labels
from ccxd.redis_url import is_sentinel, parse_sentinel

__all__ = [
    "ENV_ALIASES",
    "FLEET_KEY_MIN_BYTES",
    "RENAMED",
    "CommandHook",
    "Config",
    "ConfigError",
    "GroupConfig",
    "LoadedConfig",
    "load",
    "read_fleet_key",
    "write_fleet_key",
]

Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Bytes = Annotated[int, Meta(ge=0)]
Size = Annotated[int, Meta(ge=1)] | Annotated[str, Meta(pattern=SIZE_PATTERN)]


class CommandHook(Struct, forbid_unknown_fields=True, kw_only=True):
    """A hook program from the config (``[[command_hooks]]``): JSON on stdin and stdout, exit 2 blocks."""

    name: Annotated[str, Meta(min_length=1)]
    point: Literal["pre_execution", "post_execution", "error"]
    command: Annotated[str, Meta(min_length=1)] | Annotated[list[str], Meta(min_length=1)]
    """``/bin/sh -c`` string, or an argv list."""
    match: HookMatch = msgspec.field(default_factory=HookMatch)
    timeout: Positive | None = None
    """Seconds; unset means hook_timeout."""
    policy: Literal["open", "closed"] | None = None
    """When the hook fails; unset means the default of its point."""


BuiltinHook = Literal["venv", "policy", "metrics", "claude_precheck"]


class GroupConfig(Struct, forbid_unknown_fields=True, kw_only=True):
    """A queue group (``[groups.NAME]`` or ``groups = { NAME = { parallel = 2 } }``)."""

    parallel: Annotated[int, Meta(ge=1, le=100_000)] | None = None
    """Jobs of the group running at once at most; unset: no limit of its own."""
    worktree: bool = False
    """Each job of the group runs in a git worktree of its own (as ``job.start`` ``worktree``)."""
    budget_daily_usd: NonNegative = 0.0
    """US dollars the group's Claude jobs may cost per local day (0: no budget of its own); once
    spent, its new Claude jobs wait or are refused as for ``claude_budget_daily_usd``."""
    budget_monthly_usd: NonNegative = 0.0
    """The same per calendar month (0: no budget of its own)."""


class Config(Struct, forbid_unknown_fields=True, kw_only=True):
    """Every setting of the daemon, with its default."""

    # Jobs
    shell: str = "zsh"
    """Shell for ``SHELL -c COMMAND``: zsh, bash, sh, ``default`` (/bin/sh) or a path."""
    max_concurrent_jobs: Annotated[int, Meta(ge=1, le=100_000)] = 64
    """Jobs running at once; further jobs wait in the queue (by priority, then age)."""
    max_queued_jobs: Annotated[int, Meta(ge=0)] = 10_000
    """Jobs waiting at once before ``job.start`` answers "queue full"."""
    groups: dict[Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")], GroupConfig] = {}
    """Queue groups and their limits, ``{ build = { parallel = 2 } }``: a job started with
    ``group: "build"`` waits while two of the group run.  ``claude`` here overrides
    claude_max_concurrent.  ``ccxctl group set`` changes a group until the daemon stops.
    ``worktree = true`` runs each job of the group in a git worktree of its own (``--worktree``);
    ``budget_daily_usd``/``budget_monthly_usd`` cap what its Claude jobs cost."""
    default_timeout: Positive | None = None
    """Wall-clock limit for jobs that set none (seconds); unset means no limit."""
    idle_timeout: Positive | None = None
    """Kill a job that produced no output for this long (cc_executor's STREAM_TIMEOUT)."""
    kill_grace: NonNegative = 5.0
    """Seconds between SIGTERM and SIGKILL when a job is stopped."""
    finished_jobs_kept: Annotated[int, Meta(ge=0)] = 1000
    """Finished jobs kept in memory for ``job.get`` and ``job.list``."""
    job_shim: bool = True
    """Run each job under ccxd-shim, so jobs outlive the daemon and a restarted one adopts them;
    false runs jobs as children of the daemon (they end with it)."""
    shim_path: str = ""
    """The ccxd-shim binary; empty means the one built into the package, then PATH."""
    shim_server: bool = True
    """Start shims through one ``ccxd-shim --server`` that keeps a pool of them, each running one
    job at a time (the daemon never waits for a fork and exec, and most jobs need none); false
    starts a shim of its own for each job directly."""

    # Output
    chunk_size: Annotated[int, Meta(ge=1024, le=65536)] = 65536
    """Largest output chunk, in bytes.  Under ccxd-shim a busy job's output gathers for 0.3 ms between
    reads, so its chunks come out near this size; output written now and then goes at once."""
    buffer_size: Annotated[int, Meta(ge=65536)] = 8 * 1024 * 1024
    """Recent output kept in memory per job; older output is read from the spool."""
    spool_max_bytes: Bytes = 1024**3
    """Output kept on disk per job; past it the output is cut (with a marker)."""
    spool_max_total: Bytes = 4 * 1024**3
    """Finished jobs' spools kept on disk in all; past it the oldest go, once the store has their
    output (they are then read from the store, up to ``store_output_max_bytes`` each)."""

    # Transports
    socket_path: str = ""
    """Unix socket; empty means ``$XDG_RUNTIME_DIR/ccxd/ccxd.sock``."""
    max_message_bytes: Annotated[int, Meta(ge=1024)] = 1024 * 1024
    """Largest request a client may send."""
    max_connections: Annotated[int, Meta(ge=1)] = 4096
    """Connections accepted at once on each transport (a client over it is refused in one line)."""
    fd_reserve: Annotated[float, Meta(ge=0.0, le=0.9)] = 0.25
    """Share of the daemon's file-descriptor limit (raised to its hard limit at start) kept for jobs,
    their spools and Unix-socket clients: a WebSocket connection that would use it before logging in
    is closed as soon as it is accepted."""
    ws_enabled: bool = True
    """Serve the WebSocket front-end (``/ws``, ``/ws/mcp``, ``GET /health``, and MCP over HTTP at
    ``/mcp`` with the ``mcp`` extra)."""
    ws_host: str = "127.0.0.1"
    """Address the WebSocket front-end binds to."""
    ws_port: Annotated[int, Meta(ge=0, le=65535)] = 8003
    """Port of the WebSocket front-end (0: any free port, shown by ``daemon.status``)."""
    ws_auth: bool = True
    """Require the bearer token; false (only on a loopback ws_host, for old cc_executor clients) lets
    this daemon's own uid in without it: other local users still need the token."""
    ws_token_file: str = ""
    """The token; empty means ``$XDG_CONFIG_HOME/ccxd/token``, created (0600) on first start."""
    ws_allowed_origins: list[str] = []
    """Browser origins (``https://app.example:443``) allowed to connect; empty allows none."""
    ws_tls_cert: str = ""
    """PEM certificate (chain) for ``wss://``; set together with ws_tls_key."""
    ws_tls_key: str = ""
    """PEM private key for ``wss://``."""
    ws_handshake_timeout: Positive = 5.0
    """Seconds a WebSocket client has to connect (TLS included) and log in; then it is dropped."""
    ws_handshakes_max: Annotated[int, Meta(ge=1)] = 64
    """WebSocket connections not logged in yet, at once; more are closed as soon as they are accepted."""
    ws_handshakes_per_peer: Annotated[int, Meta(ge=1)] = 16
    """Of those, from one address (on loopback every local user shares 127.0.0.1)."""
    ws_ping_interval: Positive | None = 20.0
    """Seconds between WebSocket keepalive pings; unset disables them."""
    ws_ping_timeout: Positive | None = 20.0
    """Close a connection whose pong is this late (1011)."""
    ws_idle_timeout: Positive | None = 3600.0
    """Close a connection that sent nothing and followed no job for this long (1000)."""
    ws_auth_max_failures: Annotated[int, Meta(ge=1)] = 5
    """Failed logins from one local user (uid), or one remote address, within ws_auth_window
    before it gets 429."""
    ws_auth_window: Positive = 60.0
    """Seconds over which failed logins are counted."""
    ws_auth_block: Positive = 120.0
    """Seconds a user or address that failed too often is refused (429) for."""
    ws_legacy_ping_interval: Positive | None = 30.0
    """Seconds between cc_executor-style ``ping`` notifications; unset disables them."""
    legacy_cancel_on_disconnect: bool = True
    """Cancel a cc_executor ``execute`` job when its WebSocket connection closes, as cc_executor
    did; false keeps it running (follow it again with ``job.subscribe``)."""

    # Store
    store: Literal["redis", "memory"] = "redis"
    """Where history lives: Redis (embedded or ``redis_url``), or memory (lost on restart)."""
    redis_url: str = ""
    """Redis to use (redis://, rediss://, unix://, redis+sentinel://); empty means a private embedded
    redis-server.  Over TCP it must authenticate (``redis://USER:PASSWORD@HOST:PORT/DB``, an ACL user);
    a unix:// socket without a password must be yours alone.  Through Sentinel:
    ``redis+sentinel://USER:PASSWORD@HOST:PORT,HOST:PORT/SERVICE?sentinel_password=…`` (the sentinels,
    the service they monitor, their own ``sentinel_username``/``sentinel_password``, ``db=N``;
    ``rediss+sentinel://`` for TLS): after a failover ccxd finds the new primary by itself.  Passwords
    are never logged or printed."""
    redis_allow_unauthenticated: bool = False
    """Use a redis_url without a password anyway (warned about at start and in ``ccxctl status``):
    whoever else reaches that Redis can read every job's output and forge history."""
    redis_tls_ca_file: str = ""
    """PEM CA certificate(s) that a rediss:// server's certificate must chain to; empty: the system's."""
    redis_tls_cert_file: str = ""
    """PEM client certificate for rediss:// (set together with redis_tls_key_file)."""
    redis_tls_key_file: str = ""
    """PEM private key of redis_tls_cert_file."""
    store_timeout: Positive = 2.0
    """Seconds any one store call may take before Redis counts as unavailable."""
    store_output_max_bytes: Bytes = 64 * 1024 * 1024
    """Output kept in the store per job (the local spool keeps up to spool_max_bytes)."""
    journal_max_bytes: Bytes = 1024**3
    """Disk journal for store writes while Redis is unavailable; once it is full, further writes
    are dropped, logged and counted (``ccxctl status``: journal)."""
    history_max_jobs: Annotated[int, Meta(ge=1)] | None = 100_000
    """Finished jobs kept in history per node (oldest pruned first)."""
    history_max_age_days: Positive | None = 30.0
    """Finished jobs older than this are pruned."""
    history_max_signatures: Annotated[int, Meta(ge=1)] | None = 10_000
    """Command signatures whose run times (for timeout estimates) and metrics are kept; past it,
    those whose jobs finished longest ago are forgotten.  Each distinct command shape is one."""
    state_dir: str = ""
    """Spool and state directory; empty means ``$XDG_STATE_HOME/ccxd``."""

    # Worktrees (job.start worktree: a git worktree per job, under state_dir/worktrees)
    worktree_keep_days: Positive | None = 7.0
    """A job's worktree without uncommitted changes is removed this many days after its job ended
    (its branch too, when merged into the repository's HEAD); unset: kept until ``ccxctl worktree rm``."""
    worktree_remove_merged: bool = True
    """Remove a worktree without uncommitted changes, and its branch, once its branch is merged into
    the repository's HEAD (a branch without commits counts), at the next minute's round."""

    # Timeout estimates
    estimate_timeouts: bool = True
    """Give jobs without a timeout max(default_timeout, k × p95 of past successful runs)."""
    estimate_k: Annotated[float, Meta(ge=1)] = 3.0
    """The k in k × p95."""
    estimate_min_samples: Annotated[int, Meta(ge=1)] = 5
    """Successful runs needed before the estimate replaces the bootstrap."""
    estimate_bootstrap: Positive | None = 3600.0
    """Timeout for commands with too little history (unset: none)."""
    estimate_min: Positive = 10.0
    """An estimate is never shorter: a command of milliseconds can take far longer on a busy machine."""
    estimate_silence: Positive | None = 300.0
    """An estimated timeout guards against hangs and is no deadline: past it (and estimate_floor) a job
    is ended only once it has also written nothing for this many seconds.  Unset: estimates are
    wall-clock deadlines like an explicit timeout (ccxd before 2026-12)."""
    estimate_floor: NonNegative = 600.0
    """An estimated timeout never ends a job sooner than this many seconds after its start
    (cc_executor's stream timeout was 600 s)."""

    # Claude jobs: limits and retries (ccxd/claude/retry_policy.py says what each does)
    claude_max_concurrent: Annotated[int, Meta(ge=1, le=100_000)] = 4
    """Claude jobs running at once, daemon-wide; further Claude jobs wait in the queue."""
    claude_retry: bool = True
    """Retry Claude jobs that failed retryably (per job: ``retry.enabled``)."""
    claude_retry_max_attempts: Annotated[int, Meta(ge=1, le=100)] = 4
    """Runs of one Claude request at most, the first included."""
    claude_retry_backoff_base: Positive = 30.0
    """First wait after a rate limit, overload or network error (seconds); doubles per attempt."""
    claude_retry_backoff_max: Positive = 900.0
    """Longest backoff wait (seconds); also the wait for a usage limit without a reset time."""
    claude_retry_jitter: Annotated[float, Meta(ge=0, le=1)] = 0.5
    """Up to this fraction of each backoff wait is taken away at random."""
    claude_retry_token_limit: Literal["raise", "concise", "both", "off"] = "both"  # noqa: S105
    """After a token limit: raise CLAUDE_CODE_MAX_OUTPUT_TOKENS, ask for concision, both, or neither."""
    claude_retry_token_growth: Annotated[float, Meta(gt=1, le=16)] = 2.0
    """Factor by which CLAUDE_CODE_MAX_OUTPUT_TOKENS grows per retry (capped at the model's maximum)."""
    claude_usage_limit_max_wait: NonNegative = 6 * 3600.0
    """Wait for a usage-limit reset at most this far ahead (seconds); later resets fail the job."""
    claude_usage_limit_margin: NonNegative = 5.0
    """Seconds after a usage-limit reset before Claude jobs start again."""
    claude_model_max_output_tokens: dict[str, int] = {}
    """Output-token maxima by model name, added to (or replacing) the built-in table."""
    claude_budget_daily_usd: NonNegative = 0.0
    """US dollars Claude jobs may cost per local day, daemon-wide (0: no budget); once the jobs
    finished today cost that much, new Claude jobs wait for midnight or are refused
    (``claude_budget_action``)."""
    claude_budget_monthly_usd: NonNegative = 0.0
    """The same per calendar month (0: no budget)."""
    claude_budget_action: Literal["wait", "refuse"] = "wait"
    """Once a budget is spent: new Claude jobs ``wait`` in the queue until it resets, or ``job.start``
    refuses them (error -32011); Claude jobs queued already wait either way."""
    # Resources (cgroups)
    cgroup_backend: Literal["auto", "v2", "v1", "none"] = "auto"
    """Resource backend: auto (v2 if it has the memory controller, else v1, else none) or forced."""
    default_memory: Size | None = None
    """Memory limit of jobs that set none (bytes or "2G"); no swap. Unset: no limit."""
    default_cpus: Annotated[float, Meta(gt=0, le=4096)] | None = None
    """CPU quota of jobs that set none, in CPUs (1.5 = one and a half)."""
    default_pids: Annotated[int, Meta(ge=1)] | None = None
    """Most processes/threads of a job that sets none."""
    default_io_weight: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    """IO weight (1..10000, 100 is normal) of jobs that set none, where the kernel has it."""
    stats_interval: Annotated[float, Meta(ge=0.1)] = 2.0
    """Seconds between resource samples of running jobs (``job.stats``, ``ccxctl top``); longer
    when more than 100 samples a second would be needed (a thousand jobs: every 10 s)."""
    admit_min_memory: Size | None = None
    """Queued jobs wait while the host's available memory (MemAvailable) is below this."""
    admit_max_load: Annotated[float, Meta(gt=0)] | None = None
    """Queued jobs wait while the 1-minute load average per CPU is above this."""
    timeout_stretch_max: Annotated[float, Meta(ge=1, le=100)] = 1.0
    """Under load, estimated and default timeouts grow by the load per CPU (above 1), at most ×this."""
    claude_program: str = "claude"
    """The Claude Code CLI that ``kind: "claude"`` jobs run (a name on PATH or a path)."""
    claude_skip_permissions: bool = False
    """Add ``--dangerously-skip-permissions`` to ``kind: "claude"`` jobs that do not say."""
    claude_api_key_file: str = ""
    """A file holding an API key given to Claude jobs as ANTHROPIC_API_KEY; empty: none added."""
    claude_stall_timeout: Positive | None = 600.0
    """End a stream-json Claude job after this many seconds without an event (class ``stall``)."""
    claude_exit_grace: Positive = 30.0
    """End a Claude job still running this many seconds after its result (``hung_after_result``)."""

    # Hooks
    hooks_enabled: bool = True
    """Run hooks at all (false: none are loaded)."""
    hooks_dir: str = ""
    """Python hook files (``*.py`` with a HOOKS dict); empty means ``$XDG_CONFIG_HOME/ccxd/hooks``."""
    hooks_entry_points: bool = True
    """Load hooks that installed packages register in the entry-point group ``ccxd.hooks``."""
    hook_timeout: Positive = 10.0
    """Seconds a hook may take unless it sets its own timeout."""
    hook_block_limit: Annotated[int, Meta(ge=0)] = 3
    """An async Python hook that blocks the event loop past its timeout this many times is disabled
    until the hooks are reloaded (0: never disabled; each time is still recorded)."""
    hook_policy_pre_execution: Literal["open", "closed"] = "closed"
    """A pre hook that fails refuses the job (closed) or is ignored (open)."""
    hook_policy_post_execution: Literal["open", "closed"] = "open"
    """A post hook that fails is recorded (open) or also marks the record (closed)."""
    hook_policy_error: Literal["open", "closed"] = "open"
    """An error hook that fails is recorded (open) or also marks the record (closed)."""
    command_hooks: list[CommandHook] = []
    """Hook programs (``[[command_hooks]]`` tables: name, point, command, match, timeout, policy)."""
    builtin_hooks: list[BuiltinHook] = []
    """Built-in hooks to enable: venv, policy, metrics, claude_precheck."""
    policy_allow: list[str] = []
    """Policy hook: when set, a command must match one of these regular expressions."""
    policy_deny: list[str] = []
    """Policy hook: a command matching one of these regular expressions is refused."""
    metrics_listen: str = ""
    """Metrics hook: ``127.0.0.1:PORT`` serves Prometheus text on ``GET /metrics`` (loopback only;
    needs ``Authorization: Bearer`` with the WebSocket token), ``unix:PATH`` on a Unix socket (mode
    0600; ``unix:`` alone: ``metrics.sock`` in the runtime directory)."""

    # Lifecycle
    drain_timeout: NonNegative = 10.0
    """On SIGTERM, how long running jobs may finish before they are cancelled."""
    on_stop: Literal["cancel", "drain", "leave"] = "cancel"
    """What a stop (SIGTERM) does to running jobs: cancel at once, drain then cancel, or leave them
    running for the next daemon to adopt (jobs under ccxd-shim only)."""
    on_restart: Literal["cancel", "drain", "leave"] = "leave"
    """What a stop that is part of ``systemctl restart`` does to running jobs (asked of systemd);
    by default they run on and the restarted daemon adopts them."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log threshold."""

    # Fleet (several daemons on one Redis: docs/fleet-design.md)
    fleet: bool = False
    """Be one node of a fleet: daemons sharing redis_url run each other's jobs (``--where``,
    ``--node``), serve each other's jobs and re-run the jobs of a node that is lost.  Needs a
    shared redis_url (redis:// with an ACL user and password, rediss://, or redis+sentinel://)
    and fleet_key_file; off, the daemon is a node of its own as before."""
    node_name: str = ""
    """Name of this daemon in records and in the fleet (a letter or digit, then up to 63 letters,
    digits, ``_.-``); empty means the host name.  ``node_id`` is its old name, still accepted."""
    node_labels: Labels = {}
    """Labels of this node, ``{ gpu = "1", os = "debian" }``: a job started with ``--where gpu=1``
    runs only on a node that has them all (keys and values: 1 to 63 letters, digits, ``_.-``)."""
    node_slots: Annotated[int, Meta(ge=0, le=100_000)] = 0
    """Fleet jobs this node runs at once; 0 means max_concurrent_jobs."""
    node_lease: Annotated[float, Meta(ge=2, le=3600)] = 10.0
    """Seconds a node may stay silent before the fleet declares it ``lost`` (its jobs end ``lost``,
    or run again elsewhere); nodes heartbeat every node_lease / 5."""
    fleet_key_file: str = ""
    """The fleet's shared secret: the same file (32 bytes or more, mode 0600) on every node, made by
    ``ccxctl fleet-key PATH``; queue entries and control requests are signed with it, so whoever
    else writes to the Redis cannot make a node run a command.  Empty means
    ``$XDG_CONFIG_HOME/ccxd/fleet.key``."""

    def resolved_socket_path(self) -> Path:
        """The Unix socket path after defaults are applied."""
        return Path(self.socket_path) if self.socket_path else paths.runtime_dir() / "ccxd.sock"

    def resolved_state_dir(self) -> Path:
        """The state directory after defaults are applied."""
        return Path(self.state_dir) if self.state_dir else paths.state_dir()

    def resolved_hooks_dir(self) -> Path:
        """The hooks directory after defaults are applied."""
        return Path(self.hooks_dir) if self.hooks_dir else paths.config_dir() / "hooks"

    def resolved_node_name(self) -> str:
        """This node's name after defaults are applied (the host name)."""
        return self.node_name or os.uname().nodename

    def resolved_node_id(self) -> str:
        """:meth:`resolved_node_name`, by its old name."""
        return self.resolved_node_name()

    def resolved_node_slots(self) -> int:
        """Fleet jobs this node runs at once after defaults are applied."""
        return self.node_slots or self.max_concurrent_jobs

    def resolved_fleet_key_file(self) -> Path:
        """The fleet key file after defaults are applied."""
        return Path(self.fleet_key_file) if self.fleet_key_file else paths.config_dir() / "fleet.key"

    def read_fleet_key(self) -> bytes:
        """The fleet key: the key file's bytes, surrounding whitespace removed; ConfigError if unusable.

        The file must be a regular file of ours that no one else may read, holding
        at least :data:`FLEET_KEY_MIN_BYTES` bytes.
        """
        return read_fleet_key(self.resolved_fleet_key_file())


FLEET_KEY_MIN_BYTES: Final = 32
"""The shortest fleet key accepted (``ccxctl fleet-key`` writes 64 hex digits: 32 random bytes)."""

ENV_PREFIX: Final = "CCXD_"

ENV_ALIASES: Final[dict[str, str]] = {
    "CC_EXECUTOR_SHELL": "shell",
    "CC_EXECUTOR_PORT": "ws_port",
    "CC_EXECUTOR_HOST": "ws_host",
    "REDIS_URL": "redis_url",
    "STREAM_TIMEOUT": "idle_timeout",
    "MAX_BUFFER_SIZE": "buffer_size",
    "LOG_LEVEL": "log_level",
}
"""Environment names from cc_executor's README that still work."""

RENAMED: Final[dict[str, str]] = {"node_id": "node_name"}
"""Settings under an old name: the file may use either (not both with different values)."""

# Environment variables that are not settings even though they share the prefix.
_NOT_SETTINGS: Final = frozenset(
    {"CCXD_URL", "CCXD_TOKEN", "CCXD_JOB_ID", "CCXD_DEBUG", "CCXD_DEBUG_STALL_FILE"}
)


class ConfigError(Exception):
    """A setting is wrong; the message is one line naming key, value and expectation."""


class LoadedConfig(Struct):
    """A config together with where each value came from."""

    config: Config
    sources: dict[str, str]


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.structs.fields(Config)}


def _expected(exc: msgspec.ValidationError) -> str:
    # msgspec says "Expected `int` >= 1, got `str`"; keep the expectation.
    text = str(exc).split(" - at ", 1)[0]
    return text[0].lower() + text[1:] if text else "a valid value"


def _coerce(key: str, value: object, source: str, from_env: bool) -> object:
    types = _field_types()
    if key not in types:
        near = difflib.get_close_matches(key, types, n=3, cutoff=0.6)
        hint = "did you mean " + " or ".join(f"`{n}`" for n in near) + "?" if near else "see ccxd.toml(5)"
        raise ConfigError(f"{source}: unknown setting {key!r} ({hint})")
    typ = types[key]
    raw = value
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        # ``X | None`` prints as Optional[X], so look at the union's members, not its repr.
        if lowered in ("", "none", "null") and type(None) in typing.get_args(typ):
            return None
        if key == "shell" and lowered == "default":
            return "/bin/sh"
        if key == "log_level":
            value = lowered
    if from_env and isinstance(value, str) and typing.get_origin(typ) is list:
        # CCXD_WS_ALLOWED_ORIGINS="https://a.example, https://b.example" (or a JSON array)
        text = value.strip()
        if text.startswith("["):
            try:
                value = msgspec.json.decode(text)
            except msgspec.DecodeError:
                raise ConfigError(f"{source}: {key} = {raw!r}: expected a JSON array or a list") from None
        else:
            value = [v.strip() for v in text.split(",") if v.strip()]
    base = typing.get_args(typ)[0] if typing.get_origin(typ) is Annotated else typ
    if from_env and isinstance(value, str) and typing.get_origin(base) is dict:
        # CCXD_NODE_LABELS="gpu=1,os=debian" (or a JSON object)
        value = _env_table(key, value, source)
    if key == "node_labels" and isinstance(value, dict):
        _check_labels(value, f"{source}: {key}")
    try:
        return msgspec.convert(value, type=typ, strict=not from_env)
    except msgspec.ValidationError as exc:
        choices = [c for c in typing.get_args(typ) if isinstance(c, str)]
        expected = f"expected one of {', '.join(choices)}" if choices else _expected(exc)
        raise ConfigError(f"{source}: {key} = {raw!r}: {expected}") from None


_LABEL = re.compile(LABEL_PATTERN)


def _check_labels(labels: dict[object, object], where: str) -> None:
    """ConfigError naming the first label that is no label, or too many of them."""
    if len(labels) > MAX_LABELS:
        raise ConfigError(f"{where}: {len(labels)} labels, at most {MAX_LABELS}")
    for name, value in labels.items():
        for what, text in (("name", name), ("value", value)):
            if not isinstance(text, str) or not _LABEL.match(text):
                raise ConfigError(
                    f"{where}: label {what} {text!r}"
                    + (f" (of {name!r})" if what == "value" else "")
                    + ": expected 1 to 63 letters, digits, '_', '.' or '-'"
                )


def _env_table(key: str, text: str, source: str) -> object:
    """A table from the environment: a JSON object, or ``KEY=VALUE`` items separated by commas."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise ConfigError(f"{source}: {key} = {text!r}: expected a JSON object or KEY=VALUE,…") from None
    table: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",")):
        name, sep, value = item.partition("=")
        if not item:
            continue
        if not sep:
            raise ConfigError(f"{source}: {key}: {item!r} is not KEY=VALUE (items are separated by commas)")
        table[name.strip()] = value.strip()
    return table


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/ccxd/config.toml``."""
    return paths.config_dir() / "config.toml"


def load(path: Path | None = None, environ: dict[str, str] | None = None) -> LoadedConfig:
    """Build the effective config from defaults, file and environment.

    An explicit ``path`` must exist; the default path is optional.
    """
    env = dict(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    sources: dict[str, str] = {f.name: "default" for f in msgspec.structs.fields(Config)}

    file_path = path if path is not None else default_config_path()
    if path is not None or file_path.exists():
        try:
            data = tomllib.loads(_read_own_file(file_path))
        except FileNotFoundError:
            raise ConfigError(f"{file_path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file_path}: cannot read config file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: invalid TOML: {exc}") from None
        renamed: dict[str, tuple[str, object]] = {}
        for key, value in data.items():
            key = _new_name(key, value, str(file_path), renamed)
            values[key] = _coerce(key, value, str(file_path), from_env=False)
            sources[key] = str(file_path)

    for alias, key in ENV_ALIASES.items():
        if alias in env and f"{ENV_PREFIX}{key.upper()}" not in env:
            values[key] = _coerce(key, env[alias], f"${alias}", from_env=True)
            sources[key] = f"${alias}"
    env_renamed: dict[str, tuple[str, object]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        key = _new_name(name[len(ENV_PREFIX) :].lower(), value, f"${name}", env_renamed)
        values[key] = _coerce(key, value, f"${name}", from_env=True)
        sources[key] = f"${name}"

    try:
        config = msgspec.convert(values, Config)
    except msgspec.ValidationError as exc:  # pragma: no cover - fields were checked one by one
        raise ConfigError(str(exc)) from None
    _check_websocket(config, sources)
    _check_redis(config, sources)
    _check_fleet(config, sources)
    if config.metrics_listen:
        from ccxd.addresses import parse_listen

        try:
            parse_listen(config.metrics_listen)
        except ValueError as exc:
            raise ConfigError(f"{sources['metrics_listen']}: {exc}") from None
    return LoadedConfig(config=config, sources=sources)


def _new_name(key: str, value: object, source: str, seen: dict[str, tuple[str, object]]) -> str:
    """``key`` under its current name (:data:`RENAMED`); ConfigError when both names differ in one source.

    ``seen`` maps each current name given so far in this source to the name it was given as and its value.
    """
    new = RENAMED.get(key, key)
    given = seen.get(new)
    if given is not None and given[0] != key and given[1] != value:
        old, current = (key, given[0]) if new != key else (given[0], key)
        raise ConfigError(
            f"{source}: {old} is the old name of {current} and both are set, differently "
            f"({old} = {(value if old == key else given[1])!r}, {current} = "
            f"{(given[1] if old == key else value)!r}); keep {current} only"
        )
    seen[new] = (key, value)
    return new


def _read_own_file(path: Path) -> str:
    """The config file's text, refused (ConfigError) when another user could have written it."""
    from ccxd.ownership import unsafe_stat

    with open(path, "rb") as f:
        unsafe = unsafe_stat(os.fstat(f.fileno()))
        if unsafe is not None:
            raise ConfigError(f"{path}: refusing a config file {unsafe}")
        return f.read().decode("utf-8")


def _check_websocket(config: Config, sources: dict[str, str]) -> None:
    """Refuse WebSocket settings that would expose the daemon (ConfigError → exit 78)."""
    if not config.ws_enabled:
        return
    from ccxd.addresses import is_loopback_host

    if not config.ws_auth and not is_loopback_host(config.ws_host):
        raise ConfigError(
            f"ws_auth = false ({sources['ws_auth']}) is refused with the non-loopback "
            f"ws_host {config.ws_host!r} ({sources['ws_host']}): anyone who reaches it could run "
            "commands; keep ws_auth = true or bind ws_host = 127.0.0.1"
        )
    if bool(config.ws_tls_cert) != bool(config.ws_tls_key):
        raise ConfigError("ws_tls_cert and ws_tls_key must be set together (wss:// needs both)")


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` query) as ``***`` (no I/O)."""
    parts = urlsplit(url)
    if parts.password is None and "password" not in parts.query.lower():
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}"
    query = "&".join(
        f"{k}=***" if k.lower().endswith("password") else (f"{k}={v}" if v or "=" in pair else k)
        for pair in parts.query.split("&")
        if pair
        for k, _, v in [pair.partition("=")]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


REDIS_SCHEMES: Final = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
"""The forms of ``redis_url``; ``redis+sentinel://`` asks Sentinels for the primary (failover)."""


def redis_auth_missing(url: str, tls_cert_file: str = "") -> bool:
    """True when ``url`` is a TCP Redis that lets in whoever reaches it (no I/O).

    That is: no password, and (rediss://) no client certificate.

    unix:// sockets are judged at start, by who can reach the socket (``history/service.py``).
    """
    if is_sentinel(url):  # the primary and the sentinels (they name the primary) must both check
        try:
            target = parse_sentinel(url)
        except ValueError:
            return True  # _check_redis says what is wrong with it
        return not (target.tls and tls_cert_file) and not (target.password and target.sentinel_password)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return False
    if parts.password or any(k.lower() == "password" and v for k, v in parse_qsl(parts.query)):
        return False
    return not (parts.scheme.startswith("rediss") and tls_cert_file)


def _check_redis(config: Config, sources: dict[str, str]) -> None:
    """Refuse a Redis that would take anyone's word (ConfigError → exit 78)."""
    url = config.redis_url
    if not url or config.store != "redis":
        return
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"redis_url = {redact_url(url)!r} ({sources['redis_url']}): "
            "expected a redis://, rediss://, unix:// or redis+sentinel:// URL"
        )
    if is_sentinel(url):
        try:
            parse_sentinel(url)
        except ValueError as exc:
            raise ConfigError(
                f"redis_url = {redact_url(url)!r} ({sources['redis_url']}): {exc}; expected "
                "redis+sentinel://USER:PASSWORD@HOST:PORT[,HOST:PORT…]/SERVICE?sentinel_password=…"
            ) from None
    tls_keys = ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
    tls = [k for k in tls_keys if getattr(config, k)]
    if tls and not scheme.startswith("rediss"):
        raise ConfigError(f"{', '.join(tls)} ({sources[tls[0]]}) need a rediss:// redis_url")
    if bool(config.redis_tls_cert_file) != bool(config.redis_tls_key_file):
        raise ConfigError("redis_tls_cert_file and redis_tls_key_file must be set together")
    if redis_auth_missing(url, config.redis_tls_cert_file) and not config.redis_allow_unauthenticated:
        if is_sentinel(url):
            raise ConfigError(
                f"redis_url = {redact_url(url)!r} ({sources['redis_url']}) lacks a password for the "
                "primary or for the sentinels: whoever reaches them could read every job's output or "
                "name their own server as the primary; use redis+sentinel://USER:PASSWORD@HOST:PORT,…"
                "/SERVICE?sentinel_password=… (and sentinel_username=… for a sentinel ACL user), or set "
                "redis_allow_unauthenticated = true to accept the risk"
            )
        raise ConfigError(
            f"redis_url = {redact_url(url)!r} ({sources['redis_url']}) has no password: whoever reaches that "
            "Redis could read every job's output and make this daemon run commands; use "
            "redis://USER:PASSWORD@HOST:PORT (an ACL user), leave redis_url empty for the private "
            "embedded Redis, or set redis_allow_unauthenticated = true to accept the risk"
        )


_NODE_NAME = re.compile(NODE_NAME_PATTERN)


def _check_fleet(config: Config, sources: dict[str, str]) -> None:
    """Refuse fleet settings a fleet cannot work with, or would be unsafe with (ConfigError → exit 78)."""
    if not config.fleet:
        return  # a lone daemon's name is only a word in its records, as before fleets
    where = f"fleet = true ({sources['fleet']})"
    name = config.resolved_node_name()
    if not _NODE_NAME.match(name):
        given = (
            f"node_name = {name!r} ({sources['node_name']})"
            if config.node_name
            else f"the host name {name!r}"
        )
        raise ConfigError(
            f"{where}: {given} is no node name: expected a letter or digit, then up to 63 letters, "
            "digits, '_', '.' or '-'" + ("" if config.node_name else "; set node_name")
        )
    if config.store != "redis" or not config.redis_url:
        raise ConfigError(
            f"{where} needs the Redis every node shares: set redis_url (redis://USER:PASSWORD@HOST:PORT "
            "with an ACL user, rediss://…, or redis+sentinel://…); the embedded Redis is this daemon's alone"
            + (
                f', and store = "redis" (store = {config.store!r}, {sources["store"]})'
                if config.store != "redis"
                else ""
            )
        )
    url = config.redis_url
    scheme = urlsplit(url).scheme
    if scheme == "unix":
        raise ConfigError(
            f"{where}: redis_url = {redact_url(url)!r} ({sources['redis_url']}) is a Unix socket; the "
            "nodes of a fleet share a Redis over TCP: redis://USER:PASSWORD@HOST:PORT, rediss://… or "
            "redis+sentinel://…"
        )
    if redis_auth_missing(url, config.redis_tls_cert_file):
        raise ConfigError(
            f"{where}: redis_url = {redact_url(url)!r} ({sources['redis_url']}) has no password; a fleet's "
            "Redis must authenticate every node (redis://USER:PASSWORD@HOST:PORT, an ACL user), whatever "
            "redis_allow_unauthenticated says"
        )
    try:
        config.read_fleet_key()
    except ConfigError as exc:
        source = sources["fleet_key_file"]
        raise ConfigError(f"{where}: fleet_key_file ({source}): {exc}") from None


def read_fleet_key(path: Path) -> bytes:
    """The fleet key in ``path``: its bytes, surrounding whitespace removed; ConfigError if unusable."""
    hint = f"make one with `ccxctl fleet-key {path}` and copy it to every node (mode 0600)"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: {hint}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{path} is owned by uid {st.st_uid}, not by this daemon's ({os.geteuid()})")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{path} may be read or written by others (mode {stat.S_IMODE(st.st_mode):04o}), so it is "
                f"no secret: make a new one ({hint})"
            )
        data = os.read(fd, 1 << 16).strip()
    finally:
        os.close(fd)
    if len(data) < FLEET_KEY_MIN_BYTES:
        raise ConfigError(f"{path} holds {len(data)} bytes, fewer than {FLEET_KEY_MIN_BYTES}: {hint}")
    return data


def write_fleet_key(path: Path) -> None:
    """Write a new fleet key to ``path``: 64 hex digits (32 random bytes) and a newline, mode 0600.

    Never over an existing file (that would split a fleet) nor through a symlink; ConfigError with one line.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists already: a fleet key is never overwritten (remove it first)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, secrets.token_hex(FLEET_KEY_MIN_BYTES).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def render(loaded: LoadedConfig) -> str:
    """The effective config as TOML, each line commented with its source."""
    lines = []
    for f in msgspec.structs.fields(Config):
        value = getattr(loaded.config, f.name)
        source = loaded.sources[f.name]
        if f.name == "redis_url":
            value = redact_url(value)
        if f.name == "command_hooks":  # a webhook URL or a --token in a hook program's command
            value = [_shown_hook(h) for h in value]
        if value is None:
            lines.append(f"# {f.name} is unset  # {source}")
        else:
            lines.append(f"{f.name} = {_toml_value(value)}  # {source}")
    return "\n".join(lines) + "\n"


def _shown_hook(hook: CommandHook) -> CommandHook:
    from ccxd.redact import redact_argv, redact_text

    shown = redact_text(hook.command) if isinstance(hook.command, str) else redact_argv(hook.command)
    return msgspec.structs.replace(hook, command=shown)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        # A TOML inline table (node_labels), which a JSON object is not.
        items = ", ".join(f"{msgspec.json.encode(k).decode()} = {_toml_value(v)}" for k, v in value.items())
        return "{" + (f" {items} " if items else "") + "}"
    return msgspec.json.encode(value).decode()
