"""Fixtures for the packaging tests: one .deb built per test session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb built by packaging/build-deb from this tree."""
    require_tool("dpkg-deb")
    require_tool("objdump")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("Debian's /usr/bin/python3 is needed to build the package")
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run(
        [str(REPO / "packaging" / "build-deb"), str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == out
    return path
