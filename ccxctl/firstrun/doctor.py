"""``ccxctl doctor``: one line per check, each failure with the command that fixes it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from ccxctl.firstrun import units
from ccxd import config as config_mod
from ccxd import paths
from ccxd.client.blocking import BlockingConnection
from ccxd.client.errors import ClientError, UntrustedDaemon
from ccxd.config import Config
from ccxd.supervision.shim import shim_state
from ccxd.supervision.shim.build import is_static

__all__ = ["Check", "run_checks"]

Status = Literal["ok", "warn", "fail"]


class Check(msgspec.Struct, frozen=True):
    """The result of one check."""

    status: Status
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """``ok    name  detail`` or ``FAIL  name  detail — fix: …``."""
        text = f"{self.status.upper() if self.status != 'ok' else 'ok':<5} {self.name:<13} {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix else text


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


def check_redis(cfg: Config) -> Check:
    """The embedded store needs redis-server (unless redis_url or store=memory)."""
    if cfg.store == "memory":
        return Check("ok", "redis-server", "not needed (store = memory: history is lost on restart)")
    if cfg.redis_url:
        return Check("ok", "redis-server", f"not needed: ccxd uses redis_url {cfg.redis_url.split('@')[-1]}")
    path = shutil.which("redis-server")
    if path is None:
        return Check(
            "fail",
            "redis-server",
            "not found: the embedded store cannot start",
            "sudo apt install redis-server (or brew install redis), or set redis_url",
        )
    return Check("ok", "redis-server", f"{path} ({_version([path, '--version'])})")


def check_shim(cfg: Config, status: dict[str, object] | None = None) -> Check:
    """The job shim is built and current: without it jobs end with the daemon.

    With a daemon running, its own view (``daemon.status``) counts: it may run from
    another installation than this ccxctl.
    """
    reported = str(status.get("shim") or "") if status is not None else ""
    if reported.startswith(("missing", "stale")):
        problem, _, fix = reported.partition(" — fix: ")
        return Check("fail", "shim", f"the running ccxd: {problem}", fix)
    state = shim_state(cfg.shim_path, cfg.job_shim)
    if not cfg.job_shim:
        return Check("warn", "shim", state.problem, "set job_shim = true")
    if state.problem:
        return Check("fail", "shim", state.problem, state.fix)
    assert state.path is not None
    try:
        kind = "static" if is_static(Path(state.path)) else "dynamic"
    except OSError as exc:
        return Check("fail", "shim", f"{state.path}: {exc.strerror}", state.fix)
    return Check("ok", "shim", f"{state.path} ({kind}; jobs outlive the daemon)")


def check_shell(cfg: Config) -> Check:
    """The configured job shell exists (zsh by default)."""
    name = cfg.shell
    path = name if "/" in name else shutil.which("sh" if name == "default" else name)
    if path and os.access(path, os.X_OK):
        return Check("ok", "shell", f"{name}: {path}")
    fallback = shutil.which("bash") or "/bin/sh"
    fix = "sudo apt install zsh (or brew install zsh)" if name == "zsh" else f"install {name} or set shell"
    return Check("warn" if name == "zsh" else "fail", "shell", f"{name} not found; jobs use {fallback}", fix)


CLAUDE_INSTALL = "npm install -g @anthropic-ai/claude-code"


def _claude_elsewhere(home: Path, environ: dict[str, str]) -> str | None:
    """A claude CLI where installers put it off PATH (a local install, an npm prefix)."""
    candidates = [home / ".claude" / "local" / "claude", home / ".local" / "bin" / "claude"]
    candidates += [home / ".npm-global" / "bin" / "claude"]
    if environ.get("NPM_CONFIG_PREFIX"):
        candidates.append(Path(environ["NPM_CONFIG_PREFIX"]) / "bin" / "claude")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def check_claude(cfg: Config, home: Path, environ: dict[str, str]) -> list[Check]:
    """The CLI ``claude_program`` names is there and has credentials (files or an API key; not run).

    ``claude_program`` (``CCXD_CLAUDE_PROGRAM``) is a name looked up on PATH, or a path.
    """
    program = cfg.claude_program
    if "/" in program:
        where = Path(program).expanduser()
        path = str(where) if where.is_file() and os.access(where, os.X_OK) else None
    else:
        path = shutil.which(program, path=environ.get("PATH"))
    if path is None:
        named = "claude CLI" if program == "claude" else f"claude_program {program}"
        elsewhere = _claude_elsewhere(home, environ) if program == "claude" else None
        if elsewhere is not None:
            return [
                Check(
                    "warn",
                    "claude",
                    f"claude CLI at {elsewhere} is not on PATH (only needed for Claude Code jobs)",
                    f'set claude_program = "{elsewhere}" in the config (or CCXD_CLAUDE_PROGRAM)',
                )
            ]
        return [
            Check(
                "warn",
                "claude",
                f"{named} not found{' on PATH' if '/' not in program else ''} "
                "(only needed for Claude Code jobs)",
                f"{CLAUDE_INSTALL}, or point claude_program (CCXD_CLAUDE_PROGRAM) at the CLI",
            )
        ]
    found = [Check("ok", "claude", f"{path} ({_version([path, '--version'])})")]
    config_dir = Path(environ.get("CLAUDE_CONFIG_DIR") or home / ".claude")
    if environ.get("ANTHROPIC_API_KEY"):
        found.append(Check("ok", "claude login", "ANTHROPIC_API_KEY is set"))
    elif (config_dir / ".credentials.json").exists():
        found.append(Check("ok", "claude login", f"credentials in {config_dir}/.credentials.json"))
    else:
        found.append(
            Check(
                "warn",
                "claude login",
                f"no credentials in {config_dir} and no ANTHROPIC_API_KEY "
                "(the macOS keychain is not checked)",
                "run `claude` once and log in (/login), or set ANTHROPIC_API_KEY in the daemon's environment",
            )
        )
    return found


def check_cgroups(proc_self_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> Check:
    """Which cgroup hierarchy there is and whether our subtree is ours to manage (Delegate=yes)."""
    try:
        lines = Path(proc_self_cgroup).read_text().splitlines()
    except OSError:
        return Check("warn", "cgroups", "no /proc/self/cgroup: per-job limits are off")
    unified = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    if len(lines) > 1 or not unified:
        return Check(
            "warn",
            "cgroups",
            "cgroup v1/hybrid hierarchy: per-job limits use v1 controllers (as root) or are off",
            "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2",
        )
    ours = Path(root + unified[0])
    controllers = (
        (ours / "cgroup.controllers").read_text().split() if (ours / "cgroup.controllers").exists() else []
    )
    delegated = os.access(ours, os.W_OK) and os.access(ours / "cgroup.subtree_control", os.W_OK)
    if delegated and {"memory", "pids"} <= set(controllers):
        return Check("ok", "cgroups", f"cgroup v2, {ours} delegated ({' '.join(controllers)})")
    return Check(
        "warn",
        "cgroups",
        f"cgroup v2 but {ours} is not delegated to us"
        + (f" (controllers: {' '.join(controllers) or 'none'})" if delegated else ""),
        "run ccxd as the ccxd.service user unit (Delegate=yes): ccxctl init",
    )


def _mode_check(name: str, path: Path, want: int, what: str) -> Check:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check("ok", name, f"{path} does not exist yet ({what} is created on start)")
    problems = []
    if st.st_uid != os.getuid():
        problems.append(f"owned by uid {st.st_uid}")
    if stat.S_IMODE(st.st_mode) & ~want:
        problems.append(f"mode {stat.S_IMODE(st.st_mode):04o}")
    if problems:
        return Check(
            "fail",
            name,
            f"{path} is {' and '.join(problems)}",
            f"chmod {want:o} {path}; chown {os.getuid()} {path}",
        )
    return Check("ok", name, f"{path} ({stat.S_IMODE(st.st_mode):04o})")


def check_permissions(cfg: Config) -> list[Check]:
    """Socket 0600 in a 0700 directory, token 0600, all ours."""
    sock = cfg.resolved_socket_path()
    token = Path(cfg.ws_token_file) if cfg.ws_token_file else paths.config_dir() / "token"
    return [
        _mode_check("socket dir", sock.parent, 0o700, "the directory"),
        _mode_check("socket", sock, 0o600, "the socket"),
        _mode_check("token", token, 0o600, "the token"),
    ]


def _daemon_status(sock: Path) -> dict[str, object]:
    """``daemon.status`` of the daemon on ``sock`` as plain JSON (raises ClientError)."""
    conn = BlockingConnection(sock, timeout=5)
    try:
        result = conn.call("daemon.status")
    finally:
        conn.close()
    assert isinstance(result, dict)
    return result


def check_daemon(cfg: Config) -> tuple[Check, dict[str, object] | None]:
    """Something answers on the Unix socket; with it, the daemon's own status."""
    sock = cfg.resolved_socket_path()
    try:
        status = _daemon_status(sock)
    except UntrustedDaemon as exc:
        return Check("fail", "daemon", str(exc), "see the README, Security on a shared machine"), None
    except ClientError as exc:
        if exc.os_error is None:
            return Check("warn", "daemon", f"something on {sock} does not answer daemon.status: {exc}"), None
        return Check(
            "warn",
            "daemon",
            f"not running ({sock}: {exc.os_error.strerror or exc.os_error})",
            "systemctl --user start ccxd (or run ccxd)",
        ), None
    return Check("ok", "daemon", f"ccxd {status.get('version', '?')} answers on {sock}"), status


def check_unit() -> Check:
    """The user unit is installed, enabled and running."""
    found = units.installed_unit("ccxd.service")
    if not units.user_manager_running():
        where = f"installed at {found}" if found else "not installed"
        return Check("ok", "systemd unit", f"{where}; no systemd user manager here (nothing to check)")
    if found is None:
        return Check("fail", "systemd unit", "ccxd.service is not installed", "ccxctl init")
    enabled = [*units.systemctl("is-enabled", "ccxd.service", "ccxd.socket").stdout.split(), "?", "?"]
    active = units.systemctl("is-active", "ccxd.service").stdout.strip()
    detail = f"{found}; service {enabled[0]}, socket {enabled[1]}, {active}"
    if active != "active":
        return Check("warn", "systemd unit", detail, "systemctl --user start ccxd; journalctl --user -u ccxd")
    if "enabled" not in enabled:
        return Check("warn", "systemd unit", detail, "systemctl --user enable ccxd.socket ccxd.service")
    return Check("ok", "systemd unit", detail)


def check_port(cfg: Config, status: dict[str, object] | None) -> Check:
    """The WebSocket port is free; with a daemon running, where it really listens."""
    if status is not None:
        # The running daemon may have been started with another config or environment.
        listeners = status.get("listeners")
        ws = [
            str(x.get("address"))
            for x in (listeners if isinstance(listeners, list) else [])
            if isinstance(x, dict) and x.get("kind") == "websocket"
        ]
        if ws:
            return Check("ok", "port", f"the running ccxd listens on {', '.join(ws)}")
        return Check("ok", "port", "the running ccxd has no WebSocket listener")
    if not cfg.ws_enabled:
        return Check("ok", "port", "WebSocket front-end disabled (ws_enabled = false)")
    if cfg.ws_port == 0:
        return Check("ok", "port", "ws_port = 0: any free port")
    family = socket.AF_INET6 if ":" in cfg.ws_host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    # As the daemon binds: a port whose last connections are in TIME-WAIT (a ccxd
    # that just stopped) is free to listen on.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((cfg.ws_host, cfg.ws_port))
    except OSError as exc:
        return Check(
            "fail",
            "port",
            f"{cfg.ws_host}:{cfg.ws_port}: {exc.strerror}",
            f"stop what uses it (ss -ltnp 'sport = :{cfg.ws_port}') or set ws_port in the config",
        )
    finally:
        s.close()
    return Check("ok", "port", f"{cfg.ws_host}:{cfg.ws_port} is free")


def run_checks(config_path: Path | None, say: Callable[[str], None], as_json: bool = False) -> int:
    """Run every check, print one line each (or JSON); 1 when any failed."""
    try:
        cfg = config_mod.load(config_path).config
        path = config_path or config_mod.default_config_path()
        found = str(path) if path.exists() else f"{path} does not exist: built-in defaults"
        checks = [Check("ok", "config", found)]
    except config_mod.ConfigError as exc:
        cfg = Config()
        checks = [Check("fail", "config", str(exc), "fix the setting named above (ccxd.toml(5))")]
    daemon, status = check_daemon(cfg)
    checks.append(check_redis(cfg))
    checks.append(check_shim(cfg, status))
    checks.append(check_shell(cfg))
    checks += check_claude(cfg, Path.home(), dict(os.environ))
    checks.append(check_cgroups())
    checks += check_permissions(cfg)
    checks.append(daemon)
    checks.append(check_unit())
    checks.append(check_port(cfg, status))
    if as_json:
        say(json.dumps([msgspec.to_builtins(c) for c in checks], indent=2))
    else:
        for c in checks:
            say(c.line())
    return 1 if any(c.status == "fail" for c in checks) else 0
