"""The daemon's lifecycle: wire the parts together, serve, reload, stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import msgspec

from ccxd import __version__, activation, fdlimit, logs, paths
from ccxd import config as config_mod
from ccxd.access.auth import Authenticator
from ccxd.cgroups.control import ResourceControl
from ccxd.cgroups.detect import instance_name
from ccxd.config import Config, ConfigError, LoadedConfig
from ccxd.history.service import History
from ccxd.hooks.builtin import builtin_factory
from ccxd.hooks.builtin.metrics import Metrics
from ccxd.hooks.metrics_http import MetricsServer
from ccxd.hooks.prometheus import render as render_prometheus
from ccxd.hooks.runner import HookRunner
from ccxd.jobs import jobfile
from ccxd.notify import Notifier
from ccxd.proc.reaper import Reaper, become_subreaper
from ccxd.protocol import CommandMetrics, HistoryParams, Listener, Refusals, ReloadResult
from ccxd.rpc.claude_methods import register_claude_methods
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.rpc.group_methods import register_group_methods
from ccxd.rpc.history_methods import register_history_methods
from ccxd.rpc.hook_methods import register_hook_methods
from ccxd.rpc.methods import DaemonInfo, register_methods
from ccxd.rpc.node_methods import register_node_methods, single_node
from ccxd.rpc.worktree_methods import register_worktree_methods
from ccxd.store.base import StoreUnavailable
from ccxd.supervision.shimjob import load_records
from ccxd.supervision.supervisor import Supervisor
from ccxd.systemd_job import unit_job_type
from ccxd.transports.unix import UnixServer
from ccxd.transports.websocket import WebSocketServer
from ccxd.ui.methods import register_ui_methods
from ccxd.unix_claim import AlreadyRunning, UnixSocketClaim

if TYPE_CHECKING:
    from ccxd.fleet.service import Fleet

__all__ = ["AlreadyRunning", "Daemon"]

log = logging.getLogger("ccxd.daemon")

# Settings a SIGHUP can change without a restart.
_RELOADABLE = (
    "log_level",
    "max_concurrent_jobs",
    "max_queued_jobs",
    "groups",
    "default_timeout",
    "idle_timeout",
    "kill_grace",
    "finished_jobs_kept",
    "buffer_size",
    "spool_max_bytes",
    "drain_timeout",
    "on_stop",
    "on_restart",
    "legacy_cancel_on_disconnect",
    "claude_max_concurrent",
    "claude_retry",
    "claude_retry_max_attempts",
    "claude_retry_backoff_base",
    "claude_retry_backoff_max",
    "claude_retry_jitter",
    "claude_retry_token_limit",
    "claude_retry_token_growth",
    "claude_usage_limit_max_wait",
    "claude_usage_limit_margin",
    "claude_model_max_output_tokens",
    "claude_budget_daily_usd",
    "claude_budget_monthly_usd",
    "claude_budget_action",
    "default_memory",
    "default_cpus",
    "default_pids",
    "default_io_weight",
    "stats_interval",
    "admit_min_memory",
    "admit_max_load",
    "timeout_stretch_max",
    "worktree_keep_days",
    "worktree_remove_merged",
    # Hooks are loaded again on every SIGHUP.
    "hooks_enabled",
    "hooks_dir",
    "hooks_entry_points",
    "hook_timeout",
    "hook_policy_pre_execution",
    "hook_policy_post_execution",
    "hook_policy_error",
    "command_hooks",
    "builtin_hooks",
    "policy_allow",
    "policy_deny",
    "claude_program",
    "claude_skip_permissions",
    "claude_api_key_file",
    "claude_stall_timeout",
    "claude_exit_grace",
)
_LAG_INTERVAL = 0.5


class Daemon:
    """One running ccxd."""

    def __init__(self, loaded: LoadedConfig, config_path: Path | None) -> None:
        self.loaded = loaded
        self.config: Config = loaded.config
        self.config_path = config_path
        self.notifier = Notifier()
        self.info = DaemonInfo()
        self._stop = asyncio.Event()
        self._stop_mode: str | None = None  # daemon.shutdown's choice; else on_stop
        self._stop_drain: float | None = None
        self._auth: Authenticator | None = None
        self._claim = UnixSocketClaim(self.config.resolved_socket_path(), bool(self.config.socket_path))

    @property
    def _socket_path(self) -> Path:
        """Where the Unix socket is (systemd's address once it passed one)."""
        return self._claim.path

    @property
    def activated(self) -> activation.ActivatedSockets:
        """The sockets systemd passed (none before :meth:`run`)."""
        return self._claim.activated

    # -- start ----------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit code."""
        loop = asyncio.get_running_loop()
        self.info.fd_limit = fdlimit.raise_soft_limit()
        sock = self._claim.open()
        sock_dir = self._socket_path.parent
        state = paths.ensure_private_dir(self.config.resolved_state_dir())
        spool_dir = paths.ensure_private_dir(state / "spool")
        jobs_dir = paths.ensure_private_dir(paths.jobs_dir(self._socket_path))

        if not become_subreaper():
            log.warning("cannot become a child subreaper; orphaned job processes go to init")
        reaper = Reaper(loop)
        reaper.start()
        # Before the embedded redis-server starts: on delegated v2 every process of the
        # unit moves into its supervisor/ leaf, and a child started later is born there.
        resources = ResourceControl.from_config(self.config, instance_name(str(self._socket_path)))
        for pid in resources.backend.helper_pids():
            reaper.watch(pid)  # expected, so a job's end still proves nothing of it is left
        self.info.cgroups = resources.describe
        # READY=1 waits for the store: a daemon that cannot keep history is not ready.
        history = await History.open(self.config, reaper, sock_dir, state)
        self.history = history
        try:
            ws = self._bind_websocket()  # refuse a bad WebSocket setup before serving anything
        except BaseException:
            await history.close()
            reaper.stop()
            sock.close()
            self._claim.unlink()
            raise
        self.hooks = self._load_hooks(reaper, history)
        self.supervisor = Supervisor(
            self.config, reaper, spool_dir, history.recorder, resources, hooks=self.hooks, jobs_dir=jobs_dir
        )
        restored = await self._start_claude(history)
        # Jobs a previous daemon left running under their shims are adopted, not lost.
        adoptable = self.supervisor.adoptable(load_records(jobs_dir))
        fleet = self._open_fleet(history)
        if fleet is not None:  # before anything of them is written: the fleet may have given them up
            await fleet.fence_adopted([rec.info.id for rec in adoptable])
        imported = {}
        for rec in adoptable:  # before any new output: the store takes chunks in order
            imported[rec.info.id] = (await history.recorder.import_spool(rec.info.id, spool_dir))[2]
        adopted = self.supervisor.adopt(adoptable, imported)
        if adopted:
            log.info("adopted %d job(s) of a previous run", len(adopted))
        lost = await history.recorder.recover(
            spool_dir, taken_over=restored | {j.id for j in adopted}, jobs_dir=jobs_dir
        )
        if lost:
            log.warning("%d job(s) of a previous run were recorded as lost", len(lost))
        # READY=1 means a client asking about recovered jobs sees them lost, not still running.
        if history.recorder.recovered and await history.writer.flush(self.config.store_timeout):
            history.recorder.forget_recovered(jobs_dir)
        swept = self.supervisor.sweep_spools()
        if swept:
            log.info("removed the spools of %d finished job(s) of a previous run", swept)
        sup = self.supervisor
        history.start_retention(
            lambda: sup.worktrees.prune(sup.config.worktree_keep_days, sup.config.worktree_remove_merged)
        )
        # After recovery (which kills lost jobs' processes and says so): what is still in a
        # job group of the previous run goes, except groups of jobs this daemon already has.
        await resources.clean_leftovers(keep=frozenset(self.supervisor.jobs))
        dispatcher = Dispatcher()
        if fleet is not None:
            await fleet.start()
            lease = self.config.node_lease
            log.info("fleet: node %s, %d slots, lease %.1f s", fleet.name, fleet.slots, lease)
        jobs = fleet.jobs if fleet is not None else None
        register_methods(dispatcher, self.supervisor, self.info, history.store, jobs)
        register_history_methods(dispatcher, history, self.supervisor)
        register_hook_methods(dispatcher, self.hooks)
        register_group_methods(dispatcher, self.supervisor)
        register_worktree_methods(dispatcher, self.supervisor)
        register_claude_methods(dispatcher, self.claude_budgets)
        register_node_methods(
            dispatcher, fleet if fleet is not None else single_node(self.config, self.supervisor.counts)
        )
        register_ui_methods(dispatcher, ws.ui if ws else None, ws.url if ws else None)
        metrics_server = await self._start_metrics_server(history)
        self.info.store = history.describe
        self.info.store_health = history.writer.health
        self.info.request_stop = self.request_stop
        self.info.reload = self.reload
        unix = UnixServer(dispatcher, self.config.max_message_bytes, self.config.max_connections)
        await unix.start(sock)
        self.unix = unix
        self.info.refused = lambda: _refusals(unix, ws)
        self.info.connections = lambda: len(unix.connections) + (len(ws.connections) if ws else 0)
        self.info.listeners.append(Listener(kind="unix", address=str(self._socket_path)))
        if ws is not None:
            from ccxd.compat.cc_executor import CompatHandler

            compat = CompatHandler(dispatcher, self.supervisor, self.config.ws_legacy_ping_interval)
            stop_front = self._http_front(ws)
            await ws.start(compat)
            compat.start()
            self.info.listeners.append(Listener(kind="websocket", address=ws.url))
            if _have_mcp():  # without the SDK /mcp only says so (501)
                self.info.listeners.append(Listener(kind="mcp", address=_mcp_url(ws.url)))
            log.info("WebSocket clients on %s (token: %s)", ws.url, self._token_note)

        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

        background = [loop.create_task(self._monitor())]
        interval = self.notifier.watchdog_interval()
        if interval is not None:
            background.append(loop.create_task(self.notifier.watchdog(interval)))
        log.info(
            "ccxd %s ready on %s (pid %d, shell %s)",
            __version__,
            self._socket_path,
            os.getpid(),
            self.supervisor.default_shell,
        )
        self.notifier.ready(self._status_line())
        # What start-up made lives as long as the daemon: the cycle collector's full passes
        # need not walk it again (docs/decisions/9-gc-freeze.md).
        gc.freeze()

        await self._stop.wait()

        log.info("stopping (%s running jobs)", self.supervisor.counts()["running"])
        self.notifier.stopping()
        await unix.stop()
        if ws is not None:
            await compat.stop()  # first: closing its connections now must not cancel their jobs
            await stop_front()  # MCP sessions end; their jobs go on
            await ws.stop()
        self._claim.unlink()
        mode = self._stop_mode or await self._systemd_stop_mode() or self.config.on_stop
        drain = self._stop_drain if self._stop_drain is not None else self.config.drain_timeout
        log.info("stop mode: %s", mode)
        if fleet is not None:
            await fleet.stop()  # claim nothing more; the jobs running here end as the mode says
        await self.supervisor.shutdown(mode, drain)
        if fleet is not None:
            await fleet.close()
        if await history.writer.flush(self.config.store_timeout):
            # Finished jobs' records are in the store (or its journal): their job files are done.
            for job in self.supervisor.jobs.values():
                if job.finished:
                    jobfile.remove(jobs_dir, job.id)
        self.claude_gate.close()
        if metrics_server is not None:
            await metrics_server.stop()
        self.hooks.close()
        await history.close()
        await resources.close()
        for task in background:
            task.cancel()
        reaper.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        self.notifier.flush(timeout=1.0)
        log.info("stopped")
        return 0

    def _open_fleet(self, history: History) -> Fleet | None:
        """This node of the fleet, its clients made, not joined yet; None outside a fleet (``fleet``)."""
        if not self.config.fleet:
            return None
        from ccxd.fleet.service import Fleet

        key = self.config.read_fleet_key()
        fleet = Fleet(self.config, self.supervisor, history.store, key, self.claude_gate)
        fleet.open()
        self.fleet = fleet
        return fleet

    async def _start_claude(self, history: History) -> set[str]:
        """The Claude limits and retries; returns the ids of retry attempts queued again."""
        from ccxd.claude.budget import Budgets
        from ccxd.claude.gate import GROUP as CLAUDE_GROUP
        from ccxd.claude.gate import ClaudeGate
        from ccxd.claude.kind import ClaudeKind
        from ccxd.claude.retry_runner import RetryRunner
        from ccxd.store.base import StoreUnavailable

        cfg = self.config
        self.claude_budgets = budgets = Budgets(lambda: cfg)
        self.supervisor.kinds.append(ClaudeKind(lambda: cfg, budgets))
        self.claude_gate = ClaudeGate(lambda: cfg.claude_max_concurrent, self.supervisor.start_ready)
        self.claude_gate.budget = budgets.spent
        self.claude_gate.finished_hooks.append(lambda job: budgets.job_finished(job, time.time()))
        self.supervisor.gate = self.claude_gate
        self.supervisor.queue.group(CLAUDE_GROUP)  # shown by `ccxctl group list` from the start
        self.claude_retries = RetryRunner(self.supervisor, self.claude_gate, cfg, history.recorder)
        try:
            restored = await self.claude_retries.restore(history.store)
        except StoreUnavailable as exc:
            log.error("cannot read the Claude retry state: %s", exc)
            restored = set()
        await self._seed_claude_spend(history)
        return restored

    async def _seed_claude_spend(self, history: History) -> None:
        """What the Claude jobs finished this month cost, from the history (the budgets' start)."""
        from ccxd.claude.budget import month_start
        from ccxd.store.base import StoreUnavailable

        if not self.claude_budgets.configured():
            return  # no budget (one a reload sets counts the jobs finished since the start)
        since = month_start(time.time()) - 86400  # a job queued before the 1st may finish on it
        try:
            jobs = await history.store.list_jobs(HistoryParams(since=since, limit=10_000))
        except StoreUnavailable as exc:
            log.error("cannot read what Claude jobs cost this month: %s", exc)
            return
        self.claude_budgets.seed(j for j in jobs if j.state == "finished")

    def _load_hooks(self, reaper: Reaper, history: History) -> HookRunner:
        """The hook runner with the built-ins; the metrics hook counts through the store writer."""
        store = history.store

        async def read_metrics(limit: int) -> list[CommandMetrics]:
            if not history.writer.degraded:  # read our own writes: a job counted a moment ago is shown
                await history.writer.flush(min(1.0, self.config.store_timeout))
            return await asyncio.wait_for(store.metrics(limit), self.config.store_timeout)

        metrics = Metrics(history.writer.submit, read_metrics)

        async def status_metrics() -> list[CommandMetrics]:
            if "metrics" not in self.config.builtin_hooks:
                return []
            try:
                return await read_metrics(10)
            except (StoreUnavailable, TimeoutError):
                return []

        self.info.hooks = lambda: len(runner.registry.all)
        self.info.metrics = status_metrics
        runner = HookRunner(self.config, reaper, builtin_factory(metrics))
        self._read_metrics = read_metrics
        return runner

    async def _start_metrics_server(self, history: History) -> MetricsServer | None:
        """The Prometheus endpoint, when ``metrics_listen`` is set."""
        if not self.config.metrics_listen:
            return None

        async def body() -> str:
            try:
                metrics = await self._read_metrics(10_000)
            except (StoreUnavailable, TimeoutError):
                metrics = []
            return render_prometheus(metrics, self.supervisor.counts(), dict(self.hooks.runs))

        try:
            # Every local user reaches a loopback port: there the token is required.
            tcp = not self.config.metrics_listen.startswith("unix:")
            server = MetricsServer(self.config.metrics_listen, body, self._authenticator() if tcp else None)
            await server.start()
        except OSError as exc:  # the endpoint is optional: say so and serve jobs anyway
            log.error("cannot serve metrics on %s: %s", self.config.metrics_listen, exc)
            return None
        self.info.listeners.append(Listener(kind="metrics", address=server.url))
        return server

    def _authenticator(self) -> Authenticator:
        """The token check of the WebSocket and the metrics port, made once (loads or creates the token).

        With ``ws_auth = false`` the token is loaded all the same: only this
        uid's own loopback connections go without it, other local users need it.
        """
        if self._auth is not None:
            return self._auth
        from ccxd.access.auth import FailureLimiter, load_or_create_token
        from ccxd.transports.websocket import StartupRefused

        cfg = self.config
        token_path = Path(cfg.ws_token_file) if cfg.ws_token_file else paths.config_dir() / "token"
        try:
            token, created = load_or_create_token(token_path)
        except PermissionError:
            raise
        except OSError as exc:
            raise StartupRefused(f"cannot create the token file {token_path}: {exc}") from None
        self._token_note = f"{'created ' if created else ''}{token_path}"
        if not cfg.ws_auth:
            self._token_note += f"; ws_auth = false: none for uid {os.getuid()}"
        limiter = FailureLimiter(cfg.ws_auth_max_failures, cfg.ws_auth_window, cfg.ws_auth_block)
        open_uid = None if cfg.ws_auth else os.getuid()
        self._auth = Authenticator(token, cfg.ws_allowed_origins, limiter, open_uid=open_uid)
        return self._auth

    def _bind_websocket(self) -> WebSocketServer | None:
        """Load the token and TLS files and bind the WebSocket port (None when disabled)."""
        cfg = self.config
        if not cfg.ws_enabled:
            if self.activated.websocket is not None:
                log.warning("ws_enabled = false: closing the WebSocket socket systemd passed")
                self.activated.websocket.close()
                self.activated.websocket = None
            return None
        from ccxd.addresses import is_loopback_host
        from ccxd.transports.websocket import StartupRefused

        ws = WebSocketServer(cfg, self._authenticator(), self.info.started_mono)
        ws.bind(self.activated.websocket)
        if not cfg.ws_auth and not is_loopback_host(ws.address[0]):
            # The config check saw ws_host; a socket unit may listen elsewhere.
            raise StartupRefused(
                f"ws_auth = false is refused on the non-loopback address {ws.address[0]} "
                "systemd passed: keep ws_auth = true or listen on 127.0.0.1"
            )
        return ws

    def _http_front(self, ws: WebSocketServer) -> Callable[[], Awaitable[None]]:
        """``/mcp`` on the WebSocket port (MCP's streamable HTTP), before every other request; its stop."""
        from ccxd.transports.http_front import App, HttpFront

        socket_path, max_body = self._socket_path, self.config.max_message_bytes

        async def load() -> App | None:
            try:
                # In a thread: the SDK takes seconds to import on a busy machine, the loop must go on.
                module = await asyncio.to_thread(importlib.import_module, "ccxd.mcp.http")
            except ImportError as exc:
                log.warning("a client asked for MCP at /mcp, but %s: pip install 'ccxd[mcp]'", exc)
                return None
            app = module.McpHttpApp(socket_path, max_body, self.config.max_connections)
            await app.start()
            return cast(App, app)

        front = HttpFront(ws, load)
        ws.wrap_connection = front.wrap
        return front.stop

    # -- running --------------------------------------------------------------

    def _status_line(self) -> str:
        c = self.supervisor.counts()
        line = f"{c['running'] + c['paused']} running, {c['queued']} queued, {c['finished']} finished"
        fleet = getattr(self, "fleet", None)
        return f"{line}; {fleet.status_line()}" if fleet is not None else line

    async def _monitor(self) -> None:
        """Measure event-loop lag and keep systemd's STATUS= current."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + _LAG_INTERVAL
            await asyncio.sleep(_LAG_INTERVAL)
            self.info.loop_lag_ms = max(0.0, (loop.time() - due) * 1000)
            self.notifier.status(self._status_line())
            stall = os.environ.get("CCXD_DEBUG_STALL_FILE")
            if stall and os.path.exists(stall):
                # Debug-only switch to prove the watchdog: block the loop for good. The
                # file is removed first so the daemon systemd restarts does not stall too.
                with contextlib.suppress(OSError):
                    os.unlink(stall)
                log.warning("debug stall switch found: blocking the event loop")
                time.sleep(10**6)  # noqa: ASYNC251 - blocking is the point

    def reload(self) -> ReloadResult:
        """Re-read the config (SIGHUP, ``daemon.reload``) and apply what can change while running."""
        self.notifier.reloading()
        try:
            fresh = config_mod.load(self.config_path)
        except ConfigError as exc:
            log.error("reload failed, keeping the old config: %s", exc)
            self.notifier.ready(self._status_line())
            return ReloadResult(error=str(exc))
        changed = []
        for key in _RELOADABLE:
            new = getattr(fresh.config, key)
            if getattr(self.config, key) != new:
                setattr(self.config, key, new)
                changed.append(f"{key}={new!r}")
        ignored = [
            f.name
            for f in _fields()
            if f.name not in _RELOADABLE and getattr(fresh.config, f.name) != getattr(self.config, f.name)
        ]
        logs.set_level(self.config.log_level)
        self.loaded = LoadedConfig(config=self.config, sources=fresh.sources)
        hooks = getattr(self, "hooks", None)
        if hooks is not None:
            hooks.reload()
        supervisor = getattr(self, "supervisor", None)
        if supervisor is not None and changed:
            supervisor.start_ready()  # larger limits let queued jobs start now
        log.info("config reloaded: %s", ", ".join(changed) or "no changes")
        if ignored:
            log.warning("these settings need a restart to change: %s", ", ".join(ignored))
        self.notifier.ready(self._status_line())
        return ReloadResult(changed=changed, restart_needed=ignored)

    async def _systemd_stop_mode(self) -> str | None:
        """``on_restart`` when systemd is restarting the unit (not stopping it), else None."""
        if await unit_job_type() != "restart":
            return None
        log.info("systemd is restarting this unit: on_restart applies")
        return self.config.on_restart

    def request_stop(self, mode: str | None = None, drain_timeout: float | None = None) -> None:
        """Begin an orderly stop; ``mode`` overrides ``on_stop`` (``ccxctl shutdown``)."""
        if mode is not None:
            self._stop_mode = mode
            self._stop_drain = drain_timeout
        self._stop.set()


def _have_mcp() -> bool:
    """The MCP SDK is installed (looked up, not imported)."""
    try:
        return importlib.util.find_spec("mcp") is not None
    except (ImportError, ValueError):
        return False


def _mcp_url(ws_url: str) -> str:
    """``http(s)://HOST:PORT/mcp`` of the WebSocket port at ``ws(s)://HOST:PORT/ws``."""
    scheme, rest = ws_url.split("://", 1)
    return f"{'https' if scheme == 'wss' else 'http'}://{rest.split('/', 1)[0]}/mcp"


def _refusals(unix: UnixServer, ws: WebSocketServer | None) -> Refusals:
    gate = ws.gate.refused if ws is not None else {}
    return Refusals(
        ws_handshakes=gate.get("handshakes", 0),
        ws_peer=gate.get("peer", 0),
        ws_descriptors=gate.get("descriptors", 0),
        unix_max_connections=unix.refused_full,
        unix_descriptors=unix.refused,
    )


def _fields() -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(Config)
