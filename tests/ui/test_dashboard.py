"""The dashboard in a real browser against a real daemon: login, live jobs, output, cancel, history, origin."""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import free_port
from tests.ui.conftest import ARTIFACTS, ccxctl, rpc

pytestmark = pytest.mark.timeout(120)


def wait(browser, timeout: float = 10.0) -> WebDriverWait:
    return WebDriverWait(browser, timeout, poll_frequency=0.05)


def shot(browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"dashboard-{name}.png"))


def login(browser, d, view: str = "#/jobs") -> str:
    """Log in through a fresh one-time URL and open ``view``; the page's origin."""
    url = ccxctl(d, "ui", "--no-browser").stdout.strip()
    browser.get(url)
    origin = url.split("/ui/login", 1)[0]
    wait(browser).until(lambda b: b.execute_script("return document.body.dataset.conn") == "open")
    browser.get(f"{origin}/ui/{view}")
    wait(browser).until(lambda b: b.execute_script("return document.body.dataset.conn") == "open")
    return origin


def terminal_text(browser, job_id: str) -> str:
    return browser.execute_script(
        "const p = document.querySelector(`article.pane[data-job='${arguments[0]}'] .xterm-rows`);"
        "return p ? p.innerText : '';",
        job_id,
    )


def start(d, command: str, **params: object) -> str:
    """Start a job over the Unix socket (quicker than a ccxctl process); its id."""
    return str(rpc(d, "job.start", {"command": command, **params})["id"])


def cancel_quietly(d, job_id: str) -> None:
    try:
        rpc(d, "job.cancel", {"job_id": job_id})
    except RuntimeError:  # it had finished
        pass


def test_the_one_time_login_url_opens_the_dashboard_once(ui_daemon, browser):
    d = ui_daemon
    url = ccxctl(d, "ui", "--no-browser").stdout.strip()
    origin = f"http://127.0.0.1:{d.ws_port}"
    assert url.startswith(f"{origin}/ui/login?t=")
    browser.get(url)
    wait(browser).until(lambda b: b.execute_script("return document.body.dataset.conn") == "open")
    assert browser.current_url == f"{origin}/ui/"  # the secret left the address bar
    cookie = browser.get_cookie("ccxd_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    readable = browser.execute_script(
        "return document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
        " + document.documentElement.outerHTML"
    )
    assert "ccxd_session" not in readable and cookie["value"] not in readable and d.token not in readable
    browser.get(url)  # the same link again
    assert "used already or has expired" in browser.find_element(By.TAG_NAME, "body").text
    browser.delete_all_cookies()
    browser.get(f"{origin}/ui/")  # without a session the page cannot connect, and says so
    wait(browser).until(lambda b: b.execute_script("return document.body.dataset.conn") == "refused")
    assert "run ccxctl ui" in browser.find_element(By.ID, "conn").text
    assert "Run ccxctl ui in a terminal" in browser.find_element(By.ID, "main").text


def test_a_job_appears_within_a_second_of_ccxctl_run(ui_daemon, browser):
    d = ui_daemon
    login(browser, d)
    job_id = ccxctl(d, "run", "--detach", "--", "sleep 30").stdout.strip()
    try:
        shown = time.monotonic()
        row = WebDriverWait(browser, 1.0, poll_frequency=0.02).until(
            lambda b: b.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{job_id}']")
        )
        assert time.monotonic() - shown < 1.0
        wait(browser).until(lambda b: "running" in row.text)
        assert "sleep 30" in row.text and "shell" in row.text
        shot(browser, "jobs")
    finally:
        cancel_quietly(d, job_id)


def test_output_streams_live_with_colours_and_matches_the_bytes(ui_daemon, browser, tmp_path: Path):
    d = ui_daemon
    go = tmp_path / "go"
    command = (
        "printf '\\033[31mred words\\033[0m plain\\n'; echo 'to stderr' >&2; "
        "for i in 1 2 3; do echo out $i; done; "
        f"while [ ! -e {go} ]; do sleep 0.05; done; "
        "printf 'after go \\303\\251\\n'; echo 'late stderr' >&2"
    )
    login(browser, d)
    job_id = start(d, command)
    try:
        button = wait(browser).until(
            lambda b: b.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{job_id}'] button.output")
        )
        button.click()
        wait(browser).until(lambda b: "out 3" in terminal_text(b, job_id))
        assert "after go" not in terminal_text(browser, job_id)  # live: the job is still waiting
        go.touch()
        wait(browser).until(lambda b: "after go é" in terminal_text(b, job_id))
        pane = f"article.pane[data-job='{job_id}']"
        wait(browser).until(lambda b: "exited 0" in b.find_element(By.CSS_SELECTOR, f"{pane} .state").text)
        red = browser.find_elements(By.CSS_SELECTOR, f"{pane} .xterm-rows span.xterm-fg-1")
        assert any("red words" in s.text for s in red)  # the ANSI colour rendered
        assert browser.find_elements(By.CSS_SELECTOR, f"{pane} .stderr-mark")  # stderr told apart
        shot(browser, "output")
        shown = browser.execute_script(
            "const b = window.ccxdDashboard.panes.get(arguments[0]).bytes();"
            "let s = ''; for (const x of b) s += String.fromCharCode(x); return btoa(s);",
            job_id,
        )
        read = rpc(d, "job.read", {"job_id": job_id})
        expected = b"".join(
            base64.b64decode(c["data"]) if c.get("encoding") == "base64" else c["data"].encode()
            for c in read["chunks"]
        )
        assert base64.b64decode(shown) == expected
        assert b"to stderr\n" in expected and "after go é\n".encode() in expected
    finally:
        go.touch()
        cancel_quietly(d, job_id)


def _tree(pid: int, count: int) -> list[psutil.Process]:
    """The job's processes once its ``count`` children have started."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leader = psutil.Process(pid)
        children = leader.children(recursive=True)
        if len(children) >= count:
            return [leader, *children]
        time.sleep(0.05)  # no event tells when a shell forked its children
    raise AssertionError(f"job {pid} did not start {count} children")


def test_cancel_from_the_page_ends_the_whole_process_tree(ui_daemon, browser):
    d = ui_daemon
    login(browser, d)
    job_id = start(d, "sleep 300 & sleep 301 & wait")
    try:
        row = wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{job_id}']"))
        wait(browser).until(lambda b: "running" in row.text)
        procs = _tree(rpc(d, "job.get", {"job_id": job_id})["pid"], 2)
        row.find_element(By.CSS_SELECTOR, "button.cancel").click()
        wait(browser).until(lambda b: not b.find_elements(By.CSS_SELECTOR, f"#jobs tr[data-job='{job_id}']"))
        _, alive = psutil.wait_procs(procs, timeout=15)
        assert not alive, f"still running after cancel: {alive}"
        assert rpc(d, "job.get", {"job_id": job_id})["reason"] == "cancelled"
    finally:
        cancel_quietly(d, job_id)


def _tab_to(browser, label: str, limit: int = 80) -> None:
    """Press Tab until the element labelled ``label`` has the focus."""
    for _ in range(limit):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.execute_script("return document.activeElement.getAttribute('aria-label')") == label:
            return
    raise AssertionError(f"Tab never reached the element labelled {label!r}")


def test_the_keyboard_alone_opens_output_leaves_the_terminal_and_presses_cancel(ui_daemon, browser):
    d = ui_daemon
    login(browser, d)
    job_id = start(d, "while true; do echo tick; sleep 0.2; done")
    try:
        wait(browser).until(
            lambda b: b.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{job_id}'] button.cancel")
        )
        browser.execute_script("document.activeElement.blur(); window.focus();")
        _tab_to(browser, f"Show output of job {job_id}")
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        wait(browser).until(lambda b: "tick" in terminal_text(b, job_id))
        _tab_to(browser, "Terminal input")  # xterm.js's own label of its input
        ActionChains(browser).send_keys(Keys.TAB).perform()
        assert (
            browser.execute_script("return document.activeElement.getAttribute('aria-label')")
            != "Terminal input"
        )
        _tab_to(browser, f"Cancel job {job_id}")
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        wait(browser).until(lambda b: rpc(d, "job.get", {"job_id": job_id})["state"] == "finished")
        assert rpc(d, "job.get", {"job_id": job_id})["reason"] == "cancelled"
    finally:
        cancel_quietly(d, job_id)


def test_history_search_and_a_durations_plot(ui_daemon, browser):
    d = ui_daemon
    ids = [ccxctl(d, "run", "--json", "--", f"echo plotted run {n}") for n in range(3)]
    assert all(r.returncode == 0 for r in ids)
    login(browser, d, "#/history")
    grep = wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, "input[name='grep']"))
    grep.send_keys("plotted run", Keys.ENTER)
    wait(browser).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == 3)
    assert all("plotted run" in r.text for r in browser.find_elements(By.CSS_SELECTOR, "#history tbody tr"))
    shot(browser, "history")
    browser.find_element(By.CSS_SELECTOR, "nav a[data-view='stats']").click()
    plot = wait(browser).until(
        lambda b: b.find_element(
            By.CSS_SELECTOR, "button[aria-label='Plot durations of echo plotted run <n>']"
        )
    )
    plot.click()
    wait(browser).until(
        lambda b: (
            b.find_element(By.CSS_SELECTOR, "#plot-durations").get_attribute("data-points") == "3"
            and "plotted run" in b.find_element(By.CSS_SELECTOR, "main h2").text
        )
    )
    painted = browser.execute_script(
        "const c = document.querySelector('#plot-durations canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;"
    )
    assert painted > 1000
    shot(browser, "stats")
    browser.find_element(By.CSS_SELECTOR, "nav a[data-view='status']").click()
    status = wait(browser).until(lambda b: b.find_element(By.ID, "status"))
    assert "Journal backlog" in status.text and "Resource backend" in status.text
    shot(browser, "status")


class _Attacker(http.server.BaseHTTPRequestHandler):
    page = b""
    cookies: list[str] = []

    def do_GET(self) -> None:
        self.cookies.append(self.headers.get("Cookie") or "")
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: object) -> None:
        pass


def test_a_page_from_another_origin_cannot_drive_the_daemon(ui_daemon, browser, tmp_path: Path):
    d = ui_daemon
    login(browser, d)  # the victim is logged in: the browser holds the session cookie
    marker = tmp_path / "pwned"
    _Attacker.page = (
        "<!doctype html><title>waiting</title><script>"
        f"const ws = new WebSocket('ws://127.0.0.1:{d.ws_port}/ws');"
        "ws.onopen = () => { document.title = 'opened'; ws.send(JSON.stringify({jsonrpc: '2.0', id: 1,"
        f" method: 'job.start', params: {{command: 'touch {marker}'}}}})); }};"
        "ws.onmessage = () => { document.title = 'answered'; };"
        "ws.onclose = (e) => { if (document.title === 'waiting') document.title = 'closed ' + e.code; };"
        "</script>"
    ).encode()
    _Attacker.cookies = []
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Attacker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        jobs_before = len(rpc(d, "job.list", {"limit": 1000})["jobs"])
        browser.get(f"http://127.0.0.1:{port}/")
        wait(browser).until(lambda b: b.title != "waiting")
        assert browser.title.startswith("closed"), browser.title
        assert any("ccxd_session=" in c for c in _Attacker.cookies)  # cookies ignore ports: it had one
        assert f"Origin 'http://127.0.0.1:{port}' is not in ws_allowed_origins" in d.log()
        assert len(rpc(d, "job.list", {"limit": 1000})["jobs"]) == jobs_before
        assert not marker.exists()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_page_forbids_framing_and_inline_script(ui_daemon):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ui_daemon.ws_port}/ui/", timeout=10) as res:
        csp = res.headers["Content-Security-Policy"]
        assert res.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp and "unsafe" not in csp
    with socket.create_connection(("127.0.0.1", ui_daemon.ws_port), timeout=10) as s:
        s.sendall(b"GET /ui/ HTTP/1.1\r\nHost: rebound.example:80\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 421")  # DNS rebinding: a name that is not ours


def test_a_phone_sized_window_shows_jobs_without_sideways_scrolling(ui_daemon, browser):
    d = ui_daemon
    job_id = start(d, "sleep 300")
    size = browser.get_window_size()
    try:
        browser.set_window_size(500, 900)  # headless Chromium's narrowest window
        login(browser, d)
        cancel = wait(browser).until(
            lambda b: b.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{job_id}'] button.cancel")
        )
        assert cancel.is_displayed() and cancel.rect["x"] + cancel.rect["width"] <= 500
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        shot(browser, "phone")
    finally:
        browser.set_window_size(size["width"], size["height"])
        cancel_quietly(d, job_id)


def _pane(browser, job_id: str, script: str):  # type: ignore[no-untyped-def]
    """Evaluate ``script`` with ``pane`` bound to the page's OutputPane of ``job_id``."""
    return browser.execute_script(
        f"const pane = window.ccxdDashboard.panes.get(arguments[0]); {script}", job_id
    )


def test_a_big_output_opens_near_its_end_and_any_offset_or_match_is_reachable(ui_daemon, browser):
    d = ui_daemon
    rows = 300_000  # 12 bytes each: 3.6 MB, more than the 1 MiB a pane starts with
    job_id = start(
        d, f"python3 -c \"import sys; [sys.stdout.write('row %07d\\n' % i) for i in range({rows})]\""
    )
    total = rows * 12
    wait(browser, 30).until(lambda b: rpc(d, "job.get", {"job_id": job_id})["state"] == "finished")
    login(browser, d, f"#/job/{job_id}")
    wait(browser).until(
        lambda b: b.find_element(By.CSS_SELECTOR, f"button[aria-label='Show output of job {job_id}']")
    ).click()
    pane = f"article.pane[data-job='{job_id}']"
    wait(browser).until(
        lambda b: b.find_element(By.CSS_SELECTOR, pane).get_attribute("data-received") == str(1 << 20)
    )
    assert f"from byte {total - (1 << 20)}" in browser.find_element(By.CSS_SELECTOR, f"{pane} .meta").text
    offset = browser.find_element(By.CSS_SELECTOR, f"{pane} input[aria-label='Start at byte offset']")
    offset.clear()
    offset.send_keys(str(total - 10 * 12))
    browser.find_element(By.CSS_SELECTOR, f"{pane} .tools button:nth-of-type(3)").click()  # go
    wait(browser).until(
        lambda b: b.find_element(By.CSS_SELECTOR, pane).get_attribute("data-received") == "120"
    )
    first = _pane(browser, job_id, "return pane.term.buffer.active.getLine(1).translateToString(true);")
    assert first == f"row {rows - 10:07d}"  # line 0 says where the view starts
    search = browser.find_element(By.CSS_SELECTOR, f"{pane} input[aria-label='Search output']")
    search.send_keys(f"row {rows - 3:07d}", Keys.ENTER)
    wait(browser).until(
        lambda b: _pane(b, job_id, "return pane.term.getSelection();") == f"row {rows - 3:07d}"
    )


def test_filters_pause_resume_and_two_outputs_side_by_side(ui_daemon, browser):
    d = ui_daemon
    alpha = start(d, "while true; do echo a; sleep 0.2; done", session="alpha", tags=["red"])
    beta = start(d, "while true; do echo b; sleep 0.2; done", session="beta")
    try:
        login(browser, d)
        row = f"#jobs tr[data-job='{alpha}']"
        wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{beta}']"))
        browser.find_element(By.CSS_SELECTOR, "input[name='session']").send_keys("alpha")
        other = f"#jobs tr[data-job='{beta}']"

        def only_alpha(b) -> bool:
            return bool(b.find_elements(By.CSS_SELECTOR, row)) and not b.find_elements(By.CSS_SELECTOR, other)

        wait(browser).until(only_alpha)
        browser.find_element(By.CSS_SELECTOR, "input[name='session']").clear()
        wait(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, f"#jobs tr[data-job='{beta}']"))
        browser.find_element(By.CSS_SELECTOR, "input[name='tag']").send_keys("red")
        wait(browser).until(only_alpha)
        browser.find_element(By.CSS_SELECTOR, "input[name='tag']").clear()
        wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{beta}']"))
        browser.find_element(By.CSS_SELECTOR, f"{row} button.pause").click()
        wait(browser).until(lambda b: rpc(d, "job.get", {"job_id": alpha})["state"] == "paused")
        wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, f"{row} button.pause").text == "resume")
        browser.find_element(By.CSS_SELECTOR, f"{row} button.pause").click()
        wait(browser).until(lambda b: rpc(d, "job.get", {"job_id": alpha})["state"] == "running")
        for job in (alpha, beta):
            browser.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{job}'] button.output").click()
        for job, text in ((alpha, "a"), (beta, "b")):
            wait(browser).until(lambda b, j=job, t=text: f"{t}\n{t}" in terminal_text(b, j))
        left, right = (
            browser.find_element(By.CSS_SELECTOR, f"article.pane[data-job='{j}']").rect for j in (alpha, beta)
        )
        assert left["y"] == right["y"] and left["x"] + left["width"] <= right["x"]  # side by side
    finally:
        cancel_quietly(d, alpha)
        cancel_quietly(d, beta)


def test_the_output_of_a_job_only_in_history_is_replayed_from_the_store(daemon_factory, browser):
    d = daemon_factory({"CCXD_FINISHED_JOBS_KEPT": "1"})
    old = start(d, "printf 'kept in the store \\033[1mbold\\033[0m\\n'; echo 'and stderr' >&2")
    wait(browser).until(lambda b: rpc(d, "job.get", {"job_id": old})["state"] == "finished")
    newer = start(d, "true")
    wait(browser).until(lambda b: rpc(d, "job.get", {"job_id": newer})["state"] == "finished")
    wait(browser).until(lambda b: old not in {j["id"] for j in rpc(d, "job.list", {"limit": 100})["jobs"]})

    def stored(b) -> bool:  # the store has all of it
        text = "".join(c["data"] for c in rpc(d, "job.read", {"job_id": old})["chunks"])
        return "bold" in text and "and stderr\n" in text

    wait(browser).until(stored)
    login(browser, d, f"#/job/{old}")  # the record now comes from history
    wait(browser).until(
        lambda b: b.find_element(By.CSS_SELECTOR, f"button[aria-label='Show output of job {old}']")
    ).click()
    wait(browser).until(
        lambda b: "kept in the store bold" in terminal_text(b, old) and "and stderr" in terminal_text(b, old)
    )


def test_a_stopped_daemon_is_told_apart_from_an_ended_session(daemon_factory, browser):
    d = daemon_factory()
    login(browser, d)
    d.stop()
    wait(browser, 20).until(lambda b: b.execute_script("return document.body.dataset.conn") == "unreachable")
    assert "not reachable" in browser.find_element(By.ID, "conn").text


def test_download_saves_the_exact_bytes_even_when_not_utf8(ui_daemon, browser, tmp_path: Path):
    d = ui_daemon
    job_id = start(d, "printf 'text \\377\\376 not utf-8\\n'; echo 'on stderr' >&2; printf 'end\\n'")
    wait(browser).until(lambda b: rpc(d, "job.get", {"job_id": job_id})["state"] == "finished")
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    login(browser, d, f"#/job/{job_id}")
    wait(browser).until(
        lambda b: b.find_element(By.CSS_SELECTOR, f"button[aria-label='Show output of job {job_id}']")
    ).click()
    wait(browser).until(lambda b: "end" in terminal_text(b, job_id))
    browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Download output of job {job_id}']").click()
    saved = tmp_path / f"ccxd-{job_id}.out"
    wait(browser).until(lambda b: saved.exists() and saved.stat().st_size > 0)
    read = rpc(d, "job.read", {"job_id": job_id})["chunks"]
    expected = b"".join(
        base64.b64decode(c["data"]) if c.get("encoding") == "base64" else c["data"].encode() for c in read
    )
    assert saved.read_bytes() == expected
    assert b"\xff\xfe not utf-8\n" in expected and b"on stderr\n" in expected
