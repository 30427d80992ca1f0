"""The dashboard over TLS, reached by another name: the login `ccxctl --url wss://… ui` prints."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.conftest import DaemonProcess, remove_cgroups_of, require_tool
from tests.ui.conftest import rpc
from tests.ui.test_dashboard import wait

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls_daemon() -> Iterator[tuple[DaemonProcess, Path]]:
    openssl = require_tool("openssl")
    with tempfile.TemporaryDirectory(prefix="ccxd-ut-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        cert, key = root / "cert.pem", root / "key.pem"
        subprocess.run(
            [
                *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
                *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"),
                *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            ],
            check=True,
            capture_output=True,
        )
        d = DaemonProcess(root / "d", {"CCXD_WS_TLS_CERT": str(cert), "CCXD_WS_TLS_KEY": str(key)}).start()
        try:
            yield d, cert
        finally:
            d.stop()
            remove_cgroups_of(d)


def test_a_remote_login_over_wss_gives_a_secure_cookie_and_live_jobs(tls_daemon, browser):
    d, cert = tls_daemon
    port = d.ws_port
    res = subprocess.run(
        [
            *(sys.executable, "-m", "ccxctl", "--url", f"wss://localhost:{port}"),
            *("--token-file", str(d.token_path), "ui", "--no-browser"),
        ],
        env={**d.env, "SSL_CERT_FILE": str(cert)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    url = res.stdout.strip()
    assert url.startswith(f"https://localhost:{port}/ui/login?t=")  # the name the client used
    browser.get(url)
    wait(browser).until(lambda b: b.execute_script("return document.body.dataset.conn") == "open")
    assert browser.current_url == f"https://localhost:{port}/ui/"
    cookie = browser.get_cookie("ccxd_session")
    assert cookie is not None and cookie["secure"] and cookie["httpOnly"]
    job = rpc(d, "job.start", {"command": "sleep 30"})
    try:
        row = wait(browser).until(
            lambda b: b.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{job['id']}']")
        )
        wait(browser).until(lambda b: "running" in row.text)
    finally:
        rpc(d, "job.cancel", {"job_id": job["id"]})
