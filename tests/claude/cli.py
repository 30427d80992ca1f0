"""The pinned ``claude`` CLI and the environment that points it at the fake API (no pytest here)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from tests.claude.fake_api import FakeApi

__all__ = ["claude_env", "gateway_token", "pinned_cli"]

# Where `scripts/dev setup` puts the pinned CLI (CCXD_TEST_CLAUDE overrides it).
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ccxd-ci"
_PINNED = "2.1.332"


def pinned_cli() -> str:
    """The CLI to run: CCXD_TEST_CLAUDE, else the pinned install, else ``claude`` on PATH."""
    wanted = os.environ.get("CCXD_TEST_CLAUDE")
    if not wanted:
        pinned = _CACHE / f"claude-code@{_PINNED}" / "bin" / "claude"
        wanted = str(pinned) if pinned.exists() else "claude"
    return wanted


def gateway_token() -> str:
    """An unsigned JWT whose audience makes the CLI treat the fake as a Claude gateway.

    Only in gateway mode does the CLI read the unified rate-limit headers of a 429,
    i.e. report a subscription usage limit (with ``rate_limit_event`` and the
    "You've hit your limit · resets ..." text); with an API key a usage-limit
    429 looks like any other 429.
    """

    def part(d: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'aud': 'claude-gateway', 'sub': 'ccxd-test'})}.x"


def claude_env(api: FakeApi, home: Path, *, gateway: bool = False, retries: int = 1) -> dict[str, str]:
    """Environment for the CLI: private HOME, the fake API, nothing else reachable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": api.base_url,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # The CLI retries 429/529/401 itself (10 times by default, backing off for minutes).
        "CLAUDE_CODE_MAX_RETRIES": str(retries),
    }
    if gateway:
        env["ANTHROPIC_AUTH_TOKEN"] = gateway_token()
    else:
        env["ANTHROPIC_API_KEY"] = "sk-ant-test-key"
    return env
