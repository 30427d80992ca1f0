"""Fixtures for the packaging tests: one .deb built per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.deb_build import build_deb

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb built by packaging/build-deb from this tree."""
    require_tool("dpkg-deb")
    require_tool("objdump")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("Debian's /usr/bin/python3 is needed to build the package")
    # Built once per source content and shared with the system tests (tests/deb_build.py).
    path = build_deb()
    assert path.is_file()
    return path
