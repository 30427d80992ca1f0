"""``scripts/dev run`` on a fresh Debian 12 without test tools: it installs what running needs, nothing else.

The cached tree of ``scripts/debian-tree`` (no compiler, no test tools) runs
under ``systemd-nspawn`` (not booted: ``scripts/dev`` is the only thing that
runs) on a private overlay, with this host's apt sources (so updates of what
is installed are on offer, as on a developer's machine) and a fresh clone of
this repository at ``/src``.  ``scripts/dev run`` there must install its few
Debian packages, build the venv with runtime dependencies only, build the shim
and start a daemon that answers ``ccxctl status`` on ``/tmp/ccxd-0`` (no
``XDG_RUNTIME_DIR``) and runs a job; no test-only package may appear and no
installed package may change version.  Needs root and the network (apt, PyPI).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_TOOLS, require_tool
from tests.system.machine import debian_tree

REPO = Path(__file__).resolve().parents[2]

# What `scripts/dev test` needs and `run` must not install (scripts/dev TEST_PACKAGES).
TEST_ONLY = (
    "qemu-system-x86",
    "lintian",
    "rubocop",
    "websocketd",
    "task-spooler",
    "systemd-container",
    "debootstrap",
    "ruby",
    "man-db",
    "python3-dev",
    "nodejs",
)

# Runs inside the container as root: the daemon in the background, ccxctl against it.
SCRIPT = r"""
set -eu
dpkg-query -W -f='${Package} ${Version}\n' | sort > /out/before
cd /src
scripts/dev run > /out/run.log 2>&1 &
dev=$!
# Polled: the daemon's socket appears once it is ready (the venv build takes a while).
until .venv/bin/ccxctl status > /out/status 2>/dev/null; do
    kill -0 "$dev" 2>/dev/null || { echo "scripts/dev run exited" >&2; exit 3; }
    sleep 0.5
done
.venv/bin/ccxctl run -- 'echo hello from $0' > /out/job 2>&1
.venv/bin/python -c 'import pytest' 2>/dev/null && echo yes > /out/pytest || echo no > /out/pytest
# A package that needs a newer version of an installed one (perl needs perl-base of its
# own version, and the tree's may be older than the security update): that upgrade alone,
# said in one line.
LC_ALL=C apt-get install -s --no-install-recommends perl | awk '$1 == "Inst" && $3 ~ /^\[/ { print $2 }' > /out/perl.upgrades
( eval "$(sed -n '/^log()/p; /^as_root()/,/^}/p; /^install_system_packages()/,/^}/p' scripts/dev)"
  install_system_packages perl ) > /out/perl.log 2>&1 && echo 0 > /out/perl.rc || echo $? > /out/perl.rc
dpkg-query -W -f='${Package} ${Version}\n' | sort > /out/after
.venv/bin/ccxctl shutdown > /dev/null
wait "$dev"
"""


def _require_root() -> None:
    if os.geteuid() != 0:
        message = "systemd-nspawn needs root"
        if REQUIRE_TOOLS:
            pytest.fail(message + " (CI runs as root)")
        pytest.skip(message)


def _versions(text: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ccxd-devrun-"))
    yield d
    # The overlay lived in a private mount namespace: only plain directories are left.
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
def test_dev_run_on_a_fresh_tree_installs_only_what_running_needs(workdir: Path) -> None:
    _require_root()
    for tool in ("systemd-nspawn", "unshare", "git"):
        require_tool(tool)
    tree = debian_tree()
    src, out, upper, work, root = (workdir / n for n in ("src", "out", "upper", "work", "root"))
    for d in (out, upper, work, root):
        d.mkdir()
    subprocess.run(["git", "clone", "-q", "--no-local", str(REPO), str(src)], check=True)
    # This host's apt sources, so installed packages have updates on offer.
    apt = upper / "etc" / "apt"
    shutil.copytree("/etc/apt", apt, ignore=shutil.ignore_patterns("*.disabled*", "trusted.gpg*", "auth.conf*"))
    (upper / "etc" / "apt" / "sources.list").write_text("")
    # ... and its trust: a TLS-intercepting proxy's CA, if pip here is told of one.
    env = []
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        (upper / "etc" / "ssl").mkdir(parents=True)
        shutil.copy(ca, upper / "etc" / "ssl" / "host-ca.pem")
        env = [f"--setenv={v}=/etc/ssl/host-ca.pem" for v in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    (workdir / "script").write_text(SCRIPT)

    opts = f"lowerdir={tree},upperdir={upper},workdir={work}"
    nspawn = [
        "systemd-nspawn", "-q", "-D", str(root), "--register=no", "--keep-unit", "--as-pid2", "--pipe",
        f"--bind={src}:/src", f"--bind={out}:/out", f"--bind-ro={workdir / 'script'}:/script",
        "--setenv=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--setenv=HOME=/root", "--setenv=LANG=C.UTF-8", *env,
        # The network is the host's: any free port for the WebSocket listener.
        "--setenv=CCXD_WS_PORT=0",
        "bash", "/script",
    ]  # fmt: skip
    shell = f"mount -t overlay overlay -o {shlex.quote(opts)} {shlex.quote(str(root))} && exec {shlex.join(nspawn)}"
    with open(workdir / "nspawn.log", "w+") as nspawn_log:
        # unshare execs sh, which execs systemd-nspawn: a SIGTERM to this pid makes nspawn
        # SIGKILL the container's init, and with it everything the script started.
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", shell],
            stdin=subprocess.DEVNULL,
            stdout=nspawn_log,
            stderr=nspawn_log,
        )
        try:
            returncode = proc.wait(timeout=170)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        nspawn_log.seek(0)
        said = nspawn_log.read()
    log = (out / "run.log").read_text(errors="replace") if (out / "run.log").exists() else ""
    assert returncode == 0, f"exit {returncode}\n{said}\nscripts/dev run:\n{log}"

    status = (out / "status").read_text()
    assert "unix /tmp/ccxd-0/ccxd.sock" in status, status  # no XDG_RUNTIME_DIR: the /tmp fallback
    shim = next(line for line in status.splitlines() if line.startswith("shim"))
    assert shim.split(None, 1)[1].startswith("/src/ccxd/supervision/shim/ccxd-shim"), status
    assert "hello from" in (out / "job").read_text()
    assert (out / "pytest").read_text().strip() == "no", "the venv has the test tools"

    before, after = _versions((out / "before").read_text()), _versions((out / "after").read_text())
    installed = sorted(set(after) - set(before))
    assert {"gcc", "musl-tools"} <= set(installed), installed
    assert not set(TEST_ONLY) & set(installed), f"test-only packages installed: {set(TEST_ONLY) & set(installed)}"
    # Nothing installed is upgraded but what a new package needs, and each such upgrade is said.
    said = log + (out / "perl.log").read_text()
    announced = {w for m in re.findall(r"also upgrading what they need a newer version of: ([^(]*)", said)
                 for w in m.split()}  # fmt: skip
    changed = {p: (v, after.get(p)) for p, v in before.items() if after.get(p) != v}
    assert set(changed) <= announced, f"scripts/dev changed installed packages silently: {changed}"
    # Nor the test setup's other steps: the Claude CLI and the system tests' Debian tree.
    assert "@anthropic-ai/claude-code" not in log and "debian-tree:" not in log, log

    # When installing needs an upgrade (it depends on how old the cached tree is), it is made and said.
    perl_log = (out / "perl.log").read_text()
    assert (out / "perl.rc").read_text().strip() == "0", perl_log
    needed = set((out / "perl.upgrades").read_text().split())
    if needed:
        assert needed <= announced, perl_log
        assert all(after.get(p) != before.get(p) for p in needed), perl_log
