"""Fixtures for tests that run the real ``claude`` CLI against the fake API."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.claude.cli import pinned_cli
from tests.claude.fake_api import FakeApi
from tests.conftest import require_tool


def claude_path() -> str:
    """The pinned CLI; skip (fail under CI) when it is not installed."""
    return require_tool(pinned_cli())


@pytest.fixture
def claude_bin() -> str:
    return claude_path()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi().start()
    yield api
    api.stop()


@pytest.fixture
def claude_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ccxd-claude-home-") as d:
        yield Path(d)


@pytest.fixture
def daemon_factory(claude_home: Path, daemon_factory: Any) -> Any:
    """The daemons of a Claude test live in ``claude_home``: stop them before it is removed.

    Requesting ``claude_home`` first makes pytest tear it down after the daemons; the
    other way round, removing it raced with a Claude job still writing its session.
    """
    return daemon_factory
