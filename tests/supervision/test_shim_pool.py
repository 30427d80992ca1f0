"""The spawn server's pool of shims: reuse, one job per shim at a time, a bounded pool, the end."""

from __future__ import annotations

import array
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ccxd.supervision.shimjob import DONE_STREAM, EXIT_STREAM
from tests.cgroups.conftest import need_v1, v1_mount
from tests.conftest import remove_empty_groups
from tests.helpers import run_job
from tests.supervision.test_adoption import _need_shim  # noqa: F401 - an autouse fixture
from tests.supervision.test_shim import shim  # noqa: F401 - a fixture

POOL_IDLE_MAX = 32  # ccxd-shim.c


class Server:
    """``ccxd-shim --server`` driven the way the daemon drives it (shimserver.py)."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.shim = binary
        self.tmp = tmp
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [binary, "--server"], stdin=theirs.fileno(), stdout=subprocess.DEVNULL, start_new_session=True
        )
        theirs.close()
        self.sock = ours
        self.n = 0

    def start(self, argv: list[str], cwd: Path | None = None, cgroup: str = "-") -> tuple[int, int]:
        """Start ``argv``; return (the shim's pid, our end of its link)."""
        self.n += 1
        j = self.tmp / f"j{self.n}"
        link_r, link_w = os.pipe2(os.O_CLOEXEC)
        fields = [str(cwd or self.tmp), "0", self.shim, f"{j}.data", f"{j}.idx", "3", f"{j}.exit"]
        fields += ["65536", str(1 << 30), cgroup, "-", "--", *argv]
        data = ("\0".join(fields) + "\0").encode()
        self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [link_w, link_w]))])
        os.close(link_w)
        reply = self.sock.recv(64).split()
        assert reply[0] == b"P" and len(reply) == 3, reply
        pid = int(reply[1])
        # The shim's start time, which the daemon keeps to know it again after a restart.
        assert int(reply[2]) == int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
        return pid, link_r

    def output(self) -> bytes:
        """What the last job wrote to its spool."""
        return (self.tmp / f"j{self.n}.data").read_bytes()

    def pool(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(10)


@pytest.fixture
def server(shim: str, tmp_path: Path) -> Iterator[Server]:  # noqa: F811 - the fixture above
    s = Server(shim, tmp_path)
    yield s
    if s.proc.poll() is None:
        shims = s.pool()
        s.close()
        psutil.wait_procs(shims, timeout=10)


def read_job(link: int) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The report line and frames, up to the done frame (the link stays open)."""
    buf = b""
    frames: list[tuple[int, bytes]] = []
    report = None
    while True:
        chunk = os.read(link, 65536)
        assert chunk, "the link ended before the done frame"
        buf += chunk
        if report is None:
            if b"\n" not in buf:
                continue
            report, _, buf = buf.partition(b"\n")
        while len(buf) >= 5 and len(buf) >= 5 + int.from_bytes(buf[1:5], "little"):
            size = int.from_bytes(buf[1:5], "little")
            frames.append((buf[0], buf[5 : 5 + size]))
            buf = buf[5 + size :]
        if frames and frames[-1][0] == DONE_STREAM:
            return report, frames


def test_a_shim_takes_no_job_while_the_daemon_holds_its_last_one(server: Server) -> None:
    first, link1 = server.start(["true"])
    report, frames = read_job(link1)
    assert report.startswith(b"P ") and frames == [(EXIT_STREAM, b"0 -"), (DONE_STREAM, b"")]
    # Until this end of job 1's link is closed, job 1 may still be looked for below its shim.
    second, link2 = server.start(["true"])
    assert second != first
    read_job(link2)
    os.close(link1)
    os.close(link2)
    # Closed, both shims wait for work again: the next jobs go to them, not to new ones.
    seen = set()
    for _ in range(10):
        pid, link = server.start(["true"])
        read_job(link)
        os.close(link)
        seen.add(pid)
    assert len(seen | {first, second}) < 12
    assert len(server.pool()) <= 3


def test_a_pooled_shim_runs_each_job_with_its_own_directory_environment_and_output(server: Server) -> None:
    a, b = server.tmp / "a", server.tmp / "b"
    a.mkdir()
    b.mkdir()
    pids = set()
    for i, where in enumerate([a, b, a, b]):
        pid, link = server.start(["sh", "-c", f"pwd; echo ${{X-none}}; head -c {i * 300_000} /dev/zero"], cwd=where)
        read_job(link)
        os.close(link)
        pids.add(pid)
        data = server.output()
        assert data == f"{where}\nnone\n".encode() + b"\0" * (i * 300_000)
        assert (server.tmp / f"j{server.n}.exit").read_text() == "0 -\n"
    assert len(pids) < 4  # some shim ran more than one of them


def test_the_pool_keeps_at_most_its_limit_of_idle_shims(server: Server) -> None:
    links = []
    for _ in range(POOL_IDLE_MAX + 3):
        pid, link = server.start(["true"])
        read_job(link)
        links.append(link)
    assert len(server.pool()) == POOL_IDLE_MAX + 3  # each held by its open link
    for link in links:
        os.close(link)
    deadline = time.monotonic() + 10
    while len(server.pool()) > POOL_IDLE_MAX and time.monotonic() < deadline:
        psutil.wait_procs(server.pool(), timeout=0.05)
    assert len(server.pool()) == POOL_IDLE_MAX


def test_when_the_daemon_goes_idle_shims_exit_and_a_busy_one_finishes_its_job(server: Server) -> None:
    go = server.tmp / "go"
    idle_pid, link = server.start(["true"])
    read_job(link)
    os.close(link)
    busy_pid, busy = server.start(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; echo done"])
    shims = [psutil.Process(p) for p in {idle_pid, busy_pid}]
    server.close()
    gone, alive = psutil.wait_procs([p for p in shims if p.pid != busy_pid], timeout=10)
    assert not alive
    assert psutil.Process(busy_pid).is_running()
    go.touch()
    report, frames = read_job(busy)
    assert frames[0] == (EXIT_STREAM, b"0 -")
    os.close(busy)
    gone, alive = psutil.wait_procs([psutil.Process(busy_pid)], timeout=10)
    assert not alive
    assert server.output() == b"done\n"


def test_a_pooled_shim_joins_a_group_whose_parent_was_removed_and_made_again(server: Server) -> None:
    # A pooled shim keeps the groups' parent directories open; a parent it kept that was
    # removed (a daemon restarted) must not keep a job out of its group.
    need_v1()
    base = v1_mount("pids")
    assert base is not None
    parent = os.path.join(base, f"ccxd-test-pool-{os.getpid()}")
    group = os.path.join(parent, "g")
    shims = set()
    try:
        for _ in range(5):
            os.makedirs(group)
            pid, link = server.start(["cat", "/proc/self/cgroup"], cgroup=os.path.join(group, "cgroup.procs"))
            read_job(link)
            os.close(link)
            shims.add(pid)
            pids_line = next(line for line in server.output().decode().splitlines() if ":pids:" in line)
            assert pids_line.endswith(f"/ccxd-test-pool-{os.getpid()}/g")
            os.rmdir(group)
            os.rmdir(parent)
        assert len(shims) < 5  # some shim met a parent it had kept, removed and made again
    finally:
        remove_empty_groups(parent)


async def test_jobs_through_the_daemon_share_shims_and_none_sees_another_s_state(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env={"CCXD_JOB_SHIM": "true"})
    c = await d.client()
    parents = set()
    for i in range(6):
        where = tmp_root / f"w{i}"
        where.mkdir()
        env = {"ONLY": str(i)} if i % 2 else {}
        out, _, job, _ = await run_job(c, "pwd; echo ${ONLY-none}; echo $PPID", cwd=str(where), env=env)
        assert job.reason == "exited" and job.exit_code == 0
        lines = out.decode().split("\n")
        assert lines[:2] == [str(where), str(i) if i % 2 else "none"]
        parents.add(int(lines[2]))
    assert len(parents) < 6
    await c.close()
