"""apt-get install, remove and purge of the .deb in a throwaway Debian 12 root.

The root is an overlay on the cached tree of scripts/debian-tree (the one the
system tests boot), so the host's own /usr is never touched and every run starts
from the same clean system.  apt must install ccxd alone: the tree already
holds everything the package Depends on (redis-server, zsh, python3.11).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
# Where the package manager keeps its own records and logs: not package files.
BOOKKEEPING = ("var/lib/dpkg/", "var/lib/apt/", "var/cache/", "var/log/", "tmp/")


@pytest.fixture(scope="module")
def debian_tree() -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot and an overlay mount)")
    require_tool("debootstrap")
    proc = subprocess.run(
        [str(REPO / "scripts" / "debian-tree")], capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def root(debian_tree: Path, tmp_path: Path) -> Iterator[Path]:
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "root"
    for d in (upper, work, merged):
        d.mkdir()
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={debian_tree},upperdir={upper},workdir={work}",
            str(merged),
        ],
        check=True,
    )
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def _in(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    return subprocess.run(["chroot", str(root), *argv], env=env, capture_output=True, text=True, timeout=600)


def _files(root: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            path = os.path.normpath(os.path.join(rel, name))
            if not (path + "/").startswith(BOOKKEEPING) and not path.startswith(BOOKKEEPING):
                found.add(path)
    return found


def test_install_run_remove_purge(deb: Path, root: Path) -> None:
    before = _files(root)
    shutil.copy(deb, root / "tmp" / deb.name)

    install = _in(root, "apt-get", "install", "-y", f"/tmp/{deb.name}")
    assert install.returncode == 0, install.stdout + install.stderr
    assert "0 upgraded, 1 newly installed" in install.stdout, install.stdout
    assert _in(root, "dpkg-query", "-W", "-f=${Status}", "ccxd").stdout == "install ok installed"

    helped = _in(root, "ccxctl", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout and "doctor" in helped.stdout
    version = _in(root, "ccxd", "--version")
    assert version.returncode == 0 and version.stdout.startswith("ccxd "), version.stderr
    printed = _in(root, "ccxd", "--print-config")
    assert printed.returncode == 0 and 'shell = "zsh"' in printed.stdout, printed.stderr
    assert (root / "usr/lib/systemd/user/ccxd.service").is_file()
    assert list((root / "usr/lib/ccxd/lib").glob("python3*/site-packages/ccxd/__pycache__/*.pyc")), (
        "postinst byte-compiles the virtualenv"
    )

    remove = _in(root, "apt-get", "remove", "-y", "ccxd")
    assert remove.returncode == 0, remove.stdout + remove.stderr
    assert not (root / "usr/bin/ccxctl").exists() and not (root / "usr/lib/ccxd").exists()

    purge = _in(root, "apt-get", "purge", "-y", "ccxd")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert _in(root, "dpkg-query", "-W", "ccxd").returncode != 0
    assert not list((root / "var/lib/dpkg/info").glob("ccxd.*"))
    assert _files(root) - before == set(), "files left behind after purge"
