"""One booted Debian 12 container with the .deb installed, shared by a test module."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_TOOLS, free_port, require_tool
from tests.deb_build import build_deb

from .machine import Machine, debian_tree

USER = "ccx"  # created in the tree by scripts/debian-tree (uid 1000)


def require_root() -> None:
    if os.geteuid() != 0:
        message = "booting a container needs root"
        if REQUIRE_TOOLS:
            pytest.fail(message + " (CI runs as root)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    """A container booted from the cached tree with ccxd's .deb installed and USER lingering."""
    require_root()
    for tool in ("systemd-nspawn", "nsenter", "unshare", "debootstrap", "dpkg-deb"):
        require_tool(tool)
    tree = debian_tree()
    deb = build_deb()
    m = Machine(tree, Path(tempfile.mkdtemp(prefix="ccxd-sys-")))
    m.add_file(deb, f"/var/tmp/{deb.name}")
    try:
        m.boot()
        m.run(f"apt-get install -y -q --no-install-recommends /var/tmp/{deb.name}", timeout=120)
        # Lingering: the user's manager runs without a login, as on a server.
        m.run(f"loginctl enable-linger {USER} && systemctl start user@$(id -u {USER}).service")
        m.run("systemctl --user is-system-running --wait", user=USER)
        # The container shares the host's network, where another daemon may hold 8003.
        m.run(f"systemctl --user set-environment CCXD_WS_PORT={free_port()}", user=USER)
        yield m
    finally:
        m.shutdown()
