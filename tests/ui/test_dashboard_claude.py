"""A Claude job on the dashboard: the real CLI against the fake API, its events as a conversation."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.claude.cli import claude_env, pinned_cli
from tests.claude.fake_api import FakeApi, Stream, ToolUse
from tests.conftest import DaemonProcess, remove_cgroups_of, require_tool
from tests.ui.conftest import rpc
from tests.ui.test_dashboard import login, shot, wait

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def claude_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ccxd-claude-home-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi().start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def ui_daemon(claude_home: Path) -> Iterator[DaemonProcess]:
    claude = require_tool(pinned_cli())
    with tempfile.TemporaryDirectory(prefix="ccxd-uc-") as tmp:
        Path(tmp).chmod(0o755)
        env = {"CCXD_CLAUDE_PROGRAM": claude, "CCXD_CLAUDE_RETRY": "false"}
        d = DaemonProcess(Path(tmp) / "d", env).start()
        try:
            yield d
        finally:
            d.stop()
            remove_cgroups_of(d)


def test_a_claude_job_reads_as_a_conversation_with_its_resume_line(ui_daemon, browser, fake_api, claude_home):
    d = ui_daemon
    (claude_home / "hostname").write_text("buildhost\n")
    fake_api.script(
        ToolUse(
            name="Read",
            input={"file_path": str(claude_home / "hostname")},
            text="Let me look at the host name.",
        ),
        Stream(text="The host is named in ./hostname.", input_tokens=321, output_tokens=45),
    )
    job = rpc(
        d,
        "job.start",
        {
            "kind": "claude",
            "prompt": "what is this host called?",
            "cwd": str(claude_home),
            "env": claude_env(fake_api, claude_home),
        },
    )
    login(browser, d, f"#/job/{job['id']}")
    wait(browser, 60).until(lambda b: rpc(d, "job.get", {"job_id": job["id"]})["state"] == "finished")
    browser.refresh()
    output = wait(browser).until(
        lambda b: b.find_element(By.CSS_SELECTOR, f"button[aria-label='Show output of job {job['id']}']")
    )
    record = rpc(d, "job.get", {"job_id": job["id"]})
    session = record["claude"]["session_id"]
    assert f"claude --resume {session}" in browser.find_element(By.CSS_SELECTOR, "main .resume-line").text
    output.click()
    convo = wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, ".convo"))
    wait(browser).until(lambda b: "result" in convo.text.lower() and "The host is named" in convo.text)
    text = convo.text
    assert "Let me look at the host name." in text  # assistant text
    assert "TOOL CALL · READ" in text.upper() and "/hostname" in text  # the tool call and its input
    assert "TOOL RESULT" in text.upper()  # the CLI read the file
    assert "$" in text and "turns" in text  # the result's cost line
    pane = browser.find_element(By.CSS_SELECTOR, f"article.pane[data-job='{job['id']}']")
    assert f"claude --resume {session}" in pane.find_element(By.CSS_SELECTOR, ".resume-line").text
    browser.execute_script("arguments[0].scrollIntoView()", pane)
    shot(browser, "claude")
