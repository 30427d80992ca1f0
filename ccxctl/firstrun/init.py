"""``ccxctl init``: a commented default config, the WebSocket token, the user units enabled.

Nothing that exists is changed without a yes: from the terminal, or ``--yes``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ccxctl.firstrun import units
from ccxd import config as config_mod
from ccxd import paths
from ccxd.access.auth import load_or_create_token
from ccxd.config_docs import default_config_text

__all__ = ["run_init"]

Ask = Callable[[str], bool]
Say = Callable[[str], None]


def _write_new(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _replace(path: Path, text: str, ask: Ask, say: Say, question: str) -> bool:
    """Write ``text`` to ``path``: new files at once, different existing ones only on a yes."""
    if not path.exists():
        _write_new(path, text, 0o644)
        say(f"created   {path}")
        return True
    if path.read_text(encoding="utf-8") == text:
        say(f"kept      {path} (already up to date)")
        return False
    if not ask(f"{path} exists and differs; {question}"):
        say(f"kept      {path} (unchanged; `ccxctl init --yes` replaces it)")
        return False
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    path.write_text(text, encoding="utf-8")
    say(f"replaced  {path} (the old one is {backup})")
    return True


def _token(config_path: Path | None, say: Say) -> int:
    try:
        cfg = config_mod.load(config_path).config
    except config_mod.ConfigError as exc:
        say(f"error     config: {exc}")
        return 1
    path = Path(cfg.ws_token_file) if cfg.ws_token_file else paths.config_dir() / "token"
    if path.exists():
        say(f"kept      {path} (the WebSocket token)")
        return 0
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        load_or_create_token(path)
    except OSError as exc:
        say(f"error     {path}: {exc}")
        return 1
    say(f"created   {path} (the WebSocket token, mode 0600)")
    return 0


def _units(ask: Ask, say: Say) -> int:
    if not units.user_manager_running():
        say(
            "skipped   systemd user units: no systemd user manager answers here; "
            "run `ccxd` yourself (or under your own supervisor)"
        )
        return 0
    written = False
    exe = units.ccxd_executable()
    for name in (*units.UNIT_NAMES, "ccxd-websocket.socket"):
        found = units.installed_unit(name)
        if found is not None and found.parent != units.user_unit_dir():
            say(f"kept      {found} (installed by the package)")
            continue
        written |= _replace(
            units.user_unit_dir() / name,
            units.unit_text(name, exe),
            ask,
            say,
            f"replace it with the unit of this ccxd ({exe})?",
        )
    if written:
        units.systemctl("daemon-reload")
    failed = 0
    for name in units.UNIT_NAMES:
        if units.systemctl("is-enabled", "--quiet", name).returncode == 0:
            say(f"kept      {name} (already enabled)")
            continue
        proc = units.systemctl("enable", name)
        if proc.returncode != 0:
            say(f"error     systemctl --user enable {name}: {proc.stderr.strip()}")
            failed = 1
        else:
            say(f"enabled   {name}")
    if units.systemctl("is-active", "--quiet", "ccxd.service").returncode != 0:
        proc = units.systemctl("start", "ccxd.socket", "ccxd.service", timeout=120)
        if proc.returncode != 0:
            say(
                f"error     systemctl --user start ccxd: {proc.stderr.strip()} "
                "(see `journalctl --user -u ccxd`; a ccxd started by hand must be stopped first)"
            )
            failed = 1
        else:
            say("started   ccxd.service")
    linger = (
        subprocess.run(
            ["loginctl", "show-user", str(os.getuid()), "--property=Linger", "--value"],
            capture_output=True,
            text=True,
            check=False,
        )
        if shutil.which("loginctl")
        else None
    )
    if linger is not None and linger.stdout.strip() == "no":
        say("note      ccxd stops when you log out; keep it running with `loginctl enable-linger`")
    return failed


def run_init(config_path: Path | None, ask: Ask, say: Say) -> int:
    """Do every step, report each in one line; 0 when nothing failed."""
    path = config_path or config_mod.default_config_path()
    failed = 0
    try:
        _replace(path, default_config_text(), ask, say, "replace it with the commented defaults?")
    except OSError as exc:
        say(f"error     {path}: {exc}")
        failed = 1
    failed |= _token(config_path, say)
    failed |= _units(ask, say)
    say("next      `ccxctl doctor` checks the installation")
    return failed
