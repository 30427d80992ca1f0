"""The metrics endpoint without I/O: where it listens, and what its text never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccxd.hooks.metrics_http import Listen, parse_listen
from ccxd.hooks.prometheus import render
from ccxd.protocol import CommandMetrics


def test_listen_addresses_are_loopback_ports_or_absolute_unix_paths():
    assert parse_listen("127.0.0.1:9464") == Listen("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == Listen("::1", 0)
    assert parse_listen("unix:/run/user/1000/ccxd/m.sock") == Listen(path=Path("/run/user/1000/ccxd/m.sock"))
    assert parse_listen("unix:", runtime_dir=Path("/run/x")) == Listen(path=Path("/run/x/metrics.sock"))
    for bad, why in [
        ("0.0.0.0:9464", "only loopback"),
        ("unix:metrics.sock", "absolute path"),
        ("localhost", "HOST:PORT"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_listen(bad)


def test_signatures_stored_with_a_password_are_shown_without_it():
    """Counters stored before the hook redacted them still hold passwords: the text never does."""
    def counted(signature: str, duration: float = 0.0, **codes: int) -> CommandMetrics:
        return CommandMetrics(
            signature=signature, count=1, duration_sum=duration, reasons={"exited": 1}, exit_codes=codes
        )

    stored = [
        counted("mysql --password=hunter<n> -e <str>"),
        counted("curl -s https://u:hunter<n>@host.invalid/", **{"6": 2}),
        counted("deploy --token hunter<n>", 1.5),
    ]
    text = render(stored, {"running": 0}, {})
    assert "hunter" not in text
    assert 'signature="mysql --password=*** -e <str>"' in text
    assert 'signature="curl -s https://u:***@host.invalid/",code="6"} 2' in text
    assert 'ccxd_command_duration_seconds_sum{signature="deploy --token ***"} 1.5' in text
