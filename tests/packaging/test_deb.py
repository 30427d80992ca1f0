"""The .deb from packaging/build-deb: lintian-clean, complete, and it installs, runs and purges."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = REPO / "packaging" / "debian" / "ccxd.lintian-overrides"


def _contents(deb: Path) -> dict[str, str]:
    """Path → symlink target ('' for files and directories)."""
    out = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True)
    entries = {}
    for line in out.stdout.splitlines():
        name = line.split(None, 5)[5]
        path, _, target = name.partition(" -> ")
        entries[path.removeprefix(".").rstrip("/")] = target
    return entries


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_lintian_shows_no_errors_and_no_unjustified_warnings(deb: Path) -> None:
    lintian = require_tool("lintian")
    proc = subprocess.run([lintian, "--pedantic", str(deb)], capture_output=True, text=True, timeout=600)
    findings = [line for line in proc.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert not findings, (
        "lintian found problems; fix them in packaging/build-deb, or, for a warning that is right "
        "for this package, add an override with a comment saying why to "
        "packaging/debian/ccxd.lintian-overrides:\n" + "\n".join(findings)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_lintian_override_says_why() -> None:
    """An override (or a group of them) needs a comment directly above it."""
    explained = False
    for number, line in enumerate(OVERRIDES.read_text().splitlines(), 1):
        if line.startswith("#"):
            explained = True
        elif not line.strip():
            explained = False
        else:
            assert explained, f"{OVERRIDES}:{number}: put a comment saying why directly above {line!r}"


def test_package_contents(deb: Path) -> None:
    files = _contents(deb)
    assert files["/usr/bin/ccxd"] == "../lib/ccxd/bin/ccxd"
    assert files["/usr/bin/ccxctl"] == "../lib/ccxd/bin/ccxctl"
    for path in [
        "/usr/lib/ccxd/pyvenv.cfg",
        "/usr/lib/systemd/user/ccxd.service",
        "/usr/lib/systemd/user/ccxd.socket",
        "/usr/lib/systemd/user/ccxd-websocket.socket",
        "/usr/share/man/man8/ccxd.8.gz",
        "/usr/share/man/man1/ccxctl.1.gz",
        "/usr/share/man/man5/ccxd.toml.5.gz",
        "/usr/share/bash-completion/completions/ccxctl",
        "/usr/share/zsh/vendor-completions/_ccxctl",
        "/usr/share/fish/vendor_completions.d/ccxctl.fish",
        "/usr/share/doc/ccxd/copyright",
        "/usr/share/doc/ccxd/changelog.Debian.gz",
    ]:
        assert path in files, f"{path} is missing from the package"
    # `ccxctl init` finds the units in the package too (package data, not links).
    bundled = [p for p in files if p.endswith("/ccxctl/firstrun/units/ccxd.service")]
    assert bundled and files[bundled[0]] == "", bundled
    assert not [p for p in files if "__pycache__" in p or p.endswith(".pyc")], (
        "byte-code is compiled by postinst"
    )
    assert not [p for p in files if re.search(r"/bin/(pip|activate)", p)]


def test_control_fields(deb: Path) -> None:
    depends = [d.strip().split()[0] for d in _field(deb, "Depends").split(",")]
    assert {"redis-server", "zsh", "libc6"} <= set(depends)
    assert [d for d in depends if re.fullmatch(r"python3\.\d+", d)], "the venv's interpreter package"
    assert _field(deb, "Version").startswith(_pyproject_version() + "-")


def test_copyright_is_machine_readable_and_gpl3(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    text = (tmp_path / "usr/share/doc/ccxd/copyright").read_text()
    assert text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
    first = text.split("\n\n")[1]
    assert "Files: *" in first and "License: GPL-3+" in first
    assert "/usr/share/common-licenses/GPL-3" in text
    assert "site-packages/uvloop" in text  # bundled distributions are listed


def _pyproject_version() -> str:
    import tomllib

    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def test_ccxctl_is_the_lean_launcher(deb: Path, tmp_path: Path) -> None:
    """pip's console script imports re at every start (a fifth of `ccxctl run true`); the .deb's does not."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    text = (tmp_path / "usr/lib/ccxd/bin/ccxctl").read_text()
    assert text.startswith("#!/usr/lib/ccxd/bin/python\n")
    assert "import re" not in text
    assert "from ccxctl.__main__ import entry" in text
