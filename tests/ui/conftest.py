"""A real daemon and Debian's headless Chromium (Selenium, chromium-driver), one of each per module."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import DaemonProcess, remove_cgroups_of, require_tool

ARTIFACTS = Path(os.environ.get("CCXD_TEST_ARTIFACTS") or "/tmp/ccxd-artifacts")
"""Where the browser tests write their screenshots (CI keeps them)."""


def ccxctl(d: DaemonProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ccxctl`` of this tree against ``d`` over its Unix socket."""
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", "--socket", str(d.socket), *args],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@pytest.fixture(scope="module")
def ui_daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="ccxd-u-") as tmp:
        os.chmod(tmp, 0o755)
        d = DaemonProcess(Path(tmp) / "d").start()
        try:
            yield d
        finally:
            d.stop()
            remove_cgroups_of(d)


def _expected(message: str) -> bool:
    """Console errors the tests cause on purpose, or that the page knowingly lives with."""
    return (
        # xterm.js's <style> elements, blocked by the CSP and adopted as constructed sheets instead
        "Applying inline style violates" in message
        # refused on purpose: the foreign-origin page, the page without a session, used login links
        or "WebSocket connection to" in message
        or "403 (Forbidden)" in message
        # the stopped daemon's health check, which tells "unreachable" from "not logged in"
        or "/health - Failed to load resource: net::ERR_CONNECTION_REFUSED" in message
        # the vendored modules name source maps that are not shipped
        or ".map" in message
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium driven by chromedriver; both are gone (and checked gone) afterwards."""
    chromium = require_tool("chromium")
    driver_path = require_tool("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="ccxd-chromium-") as profile:
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for arg in (
            "--headless=new",
            "--no-sandbox",  # root in CI: Chromium's sandbox refuses to run as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
            "--no-first-run",
            "--ignore-certificate-errors",  # the wss:// test's daemon has a self-signed certificate
            f"--user-data-dir={profile}",
        ):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(driver_path)
        driver = webdriver.Chrome(service=service, options=opts)
        started = psutil.Process(service.process.pid)
        procs = [started, *started.children(recursive=True)]
        try:
            yield driver
            errors = [
                e["message"]
                for e in driver.get_log("browser")
                if e["level"] == "SEVERE" and not _expected(e["message"])
            ]
            assert not errors, "the page logged errors:\n" + "\n".join(errors)
        finally:
            driver.quit()
            _, alive = psutil.wait_procs(procs, timeout=10)
            for p in alive:  # never leave a browser behind
                p.kill()
            assert not alive, f"chromium/chromedriver outlived quit(): {alive}"


def rpc(d: DaemonProcess, method: str, params: dict[str, object] | None = None) -> dict:  # type: ignore[type-arg]
    """One JSON-RPC call over the daemon's Unix socket (what the page shows is checked against it)."""
    import json
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(d.socket))
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("daemon closed the connection")
            buf += data
    reply = json.loads(buf.split(b"\n", 1)[0])
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply["result"]  # type: ignore[no-any-return]
