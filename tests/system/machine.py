"""A Debian 12 system booted with systemd-nspawn, for tests that need a real systemd.

The tree comes from ``scripts/debian-tree`` (built once, cached) and is never
written to: each boot runs on an overlay whose upper layer is private to the
run, mounted in a private mount namespace (``unshare -m``) so it disappears with
the container even if the test process dies. Commands run inside through
``nsenter`` into the container's namespaces; no systemd manager ever starts on
the host and no machined registration is needed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["REPO", "Machine", "debian_tree"]

REPO = Path(__file__).resolve().parents[2]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def debian_tree() -> Path:
    """The cached Debian 12 tree (built on first use: a few minutes)."""
    out = subprocess.run(
        [str(REPO / "scripts" / "debian-tree")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


class Machine:
    """One booted container: ``run`` commands as root or as a user, then ``shutdown``."""

    def __init__(self, tree: Path, workdir: Path) -> None:
        self.tree = tree
        self.workdir = workdir
        self.upper = workdir / "upper"
        self.root = workdir / "root"
        self.log_path = workdir / "nspawn.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self.boot_seconds = 0.0

    def add_file(self, source: Path, dest: str) -> None:
        """Put a file into the machine before boot (in the overlay's upper layer only)."""
        target = self.upper / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)

    def boot(self, timeout: float = 60.0) -> None:
        """Boot and wait until the system manager reports it is up."""
        for d in (self.upper, self.workdir / "work", self.root):
            d.mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={self.tree},upperdir={self.upper},workdir={self.workdir / 'work'}"
        script = (
            f"mount -t overlay overlay -o {shlex.quote(opts)} {shlex.quote(str(self.root))} && "
            f"exec systemd-nspawn -q -D {shlex.quote(str(self.root))} -b --register=no --keep-unit "
            "--console=pipe --hostname=ccxd-ci"
        )
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = started + timeout
        while self.leader is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no container init after {timeout} s:\n{self.log()}")
            self.leader = _container_init(self.proc.pid)
            if self.leader is None:
                time.sleep(0.02)  # polling /proc: nspawn gives no event for "init exists"
        # Empty or "offline" until init has opened its private socket; --wait waits from then on.
        state = "offline"
        while state in ("offline", "") and time.monotonic() < deadline:
            state = self.run(
                "systemctl is-system-running --wait", check=False, timeout=timeout
            ).stdout.strip()
        self.boot_seconds = time.monotonic() - started
        if state not in ("running", "degraded"):
            failed = self.run("systemctl --failed", check=False)
            raise RuntimeError(f"the container did not boot ({state}):\n{failed.stdout}{failed.stderr}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def run(
        self,
        command: str,
        user: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` with sh inside the machine, as root or as ``user`` (a login shell)."""
        assert self.leader is not None, "boot() first"
        argv = [
            "nsenter",
            "-t",
            str(self.leader),
            "-a",
            "-r",
            "-w",
            "env",
            "-i",
            f"PATH={PATH}",
            "LANG=C.UTF-8",
        ]
        if user is None:
            argv += ["sh", "-c", command]
        else:
            # su's PAM session gives XDG_RUNTIME_DIR; set it anyway for a lingering user.
            uid = self.run(f"id -u {shlex.quote(user)}").stdout.strip()
            argv += ["su", "-", user, "-c", f"export XDG_RUNTIME_DIR=/run/user/{uid}; {command}"]
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(
                f"{command!r} as {user or 'root'} exited {res.returncode}\n"
                f"stdout: {res.stdout}\nstderr: {res.stderr}"
            )
        return res

    def shutdown(self, timeout: float = 20.0) -> None:
        """Power the machine off (SIGTERM to nspawn), force it if that hangs; drop the overlay."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.leader is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.leader, signal.SIGKILL)  # init of the pid namespace: all go
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _container_init(ancestor: int) -> int | None:
    """The pid (host view) of the process that is pid 1 in a new namespace below ``ancestor``."""
    todo = [ancestor]
    while todo:
        pid = todo.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            if len(nspid) > 1 and nspid[-1] == "1":
                # nspawn's child is pid 1 before it becomes systemd; only init will do.
                return child if status.startswith("Name:\tsystemd\n") else None
            todo.append(child)
    return None
