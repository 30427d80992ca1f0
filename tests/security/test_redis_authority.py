"""Redis is input, not authority (issue 19): a Redis others reach can neither be used unawares nor steer the daemon.

Real redis-servers on free loopback ports (some run by the ``ccxd-attacker``
uid, as a shared Redis would be), real TLS with a CA made here by ``openssl``,
real daemons.  The attack of the issue is replayed: another user writes a
waiting Claude retry into the store, and the next daemon start must not run it
while the victim's own waiting retry still runs.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccxd.client import RemoteError
from ccxd.protocol import HistoryParams, JobFinished, JobList, JobRetry, OutputChunk
from ccxd.store import keys
from tests.conftest import free_port, require_tool
from tests.security.conftest import ATTACKER

pytestmark = pytest.mark.timeout(240)


class TcpRedis:
    """A redis-server on a loopback TCP port, as another user runs it when ``user`` is given."""

    def __init__(self, workdir: Path, *options: str, user: str | None = None, tls: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.tls = tls
        self.options = list(options)
        self.user = user
        self.cli_options: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TcpRedis:
        port = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        argv = [require_tool("redis-server"), "--bind", "127.0.0.1", *port, "--dir", str(self.workdir)]
        argv += ["--save", "", "--appendonly", "no", "--loglevel", "warning", *self.options]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.01)  # redis-server offers no readiness signal on a TCP port
        raise RuntimeError("redis-server did not listen in time")

    def cli(self, *args: str, user: str | None = None, stdin: bytes | None = None) -> bytes:
        """``redis-cli`` against it (as ``user`` when given); its stdout."""
        argv = [require_tool("redis-cli"), "-p", str(self.port), *self.cli_options, *args]
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        res = subprocess.run(argv, input=stdin, capture_output=True, timeout=30, check=True, cwd="/")
        return res.stdout

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def redises() -> Iterator[list[TcpRedis]]:
    started: list[TcpRedis] = []
    yield started
    for r in started:
        r.stop()


def run_ccxd(d: Any, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Start ccxd in the foreground expecting it to refuse; its exit."""
    return subprocess.run(
        d.command, env=d.env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )


def single_line(res: subprocess.CompletedProcess[bytes]) -> str:
    """The one line a refused start says (besides the daemon's log lines up to then)."""
    err = res.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not re.match(r"\d{4}-\d\d-\d\d \d\d:", line)]
    assert len(lines) == 1 and lines[0].startswith("ccxd: "), err
    return lines[0]


def ccxctl(d: Any, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(d.env, CCXD_SOCKET=str(d.socket))
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", *args], env=env, capture_output=True, timeout=60, check=False
    )


async def run_job(d: Any, command: str) -> tuple[str, bytes]:
    """Run ``command`` to its end through the daemon; (job id, its stdout)."""
    c = await d.client()
    job_id, out = "", b""
    async for ev in c.run(command):
        if isinstance(ev, OutputChunk):
            out += ev.raw()
        if isinstance(ev, JobFinished):
            assert ev.job.exit_code == 0, ev.job
            job_id = ev.job.id
    await c.close()
    return job_id, out


async def stored_jobs(d: Any) -> list[str]:
    c = await d.client()
    res: JobList = await c.call("history.list", HistoryParams(limit=50))
    await c.close()
    return [j.id for j in res.jobs]


# -- (1) a Redis without a password -------------------------------------------------------------


async def test_a_redis_without_password_is_refused_unless_allowed_and_then_warned_about(
    daemon_factory: Any, attacker: int, lair: Path, redises: list[TcpRedis]
) -> None:
    # Debian's default: a Redis on 127.0.0.1:6379 that any local user reaches, here run by another uid.
    shared = TcpRedis(lair, user=ATTACKER).start()
    redises.append(shared)
    url = f"redis://127.0.0.1:{shared.port}"
    d = daemon_factory(extra_env={"REDIS_URL": url}, start=False)  # cc_executor's documented setting
    res = run_ccxd(d)
    assert res.returncode == 78, res
    line = single_line(res)
    assert "redis_url" in line and "$REDIS_URL" in line and "no password" in line, line
    assert "redis_allow_unauthenticated = true" in line and "USER:PASSWORD" in line, line
    assert shared.cli("DBSIZE").strip() == b"0"  # nothing was written, nothing read

    d = daemon_factory(extra_env={"REDIS_URL": url, "CCXD_REDIS_ALLOW_UNAUTHENTICATED": "true"})
    warning = [line for line in d.log().splitlines() if "WARNING" in line and "unauthenticated" in line]
    assert len(warning) == 1 and url in warning[0], d.log()
    job_id, out = await run_job(d, "echo recorded")
    assert out == b"recorded\n"
    c = await d.client()
    store = (await c.status()).store
    await c.close()
    assert "WARNING" in store and "unauthenticated" in store and "redis_allow_unauthenticated" in store
    shown = ccxctl(d, "status")
    assert shown.returncode == 0 and b"WARNING: redis_url" in shown.stdout, shown


def test_a_unix_socket_of_another_user_is_held_to_the_tcp_rule(
    daemon_factory: Any, attacker: int, lair: Path, redises: list[TcpRedis]
) -> None:
    # A Redis socket anyone may connect to, in a directory the other user owns (like /run/redis).
    sock = lair / "redis.sock"
    shared = TcpRedis(lair, "--unixsocket", str(sock), "--unixsocketperm", "777", user=ATTACKER)
    redises.append(shared.start())
    d = daemon_factory(extra_env={"CCXD_REDIS_URL": f"unix://{sock}"}, start=False)
    res = run_ccxd(d)
    assert res.returncode == 78, res
    line = single_line(res)
    assert f"redis_url = 'unix://{sock}' is refused" in line and "another user owns" in line, line
    assert "redis_allow_unauthenticated = true" in line, line
    assert shared.cli("DBSIZE").strip() == b"0"
    # With a password (an ACL user) the same socket is fine: it authenticates like TCP.
    shared.cli("ACL", "SETUSER", "ccxd", "on", ">pw", "~*", "&*", "+@all", user=ATTACKER)
    d = daemon_factory(extra_env={"CCXD_REDIS_URL": f"unix://ccxd:pw@{sock}"})
    assert "unauthenticated" not in d.log()


def test_a_store_key_others_could_read_or_another_user_owns_stops_the_daemon(
    daemon_factory: Any, attacker: int
) -> None:
    d = daemon_factory()  # the private embedded Redis: the key is made at the first start
    d.stop()
    key = d.state / "ccxd" / "store.key"
    assert os.stat(key).st_mode & 0o777 == 0o600
    made = key.read_bytes()
    for change, words in (
        (lambda: os.chmod(key, 0o644), "open to others"),
        (lambda: os.chown(key, attacker, -1), "owned by uid"),
    ):
        change()
        res = run_ccxd(d)
        assert res.returncode == 78, res
        line = single_line(res)
        assert str(key) in line and words in line and "remove it" in line, line
        os.chown(key, os.getuid(), -1)
        os.chmod(key, 0o600)
    assert key.read_bytes() == made  # refused, never tightened or replaced behind the user's back


# -- (2) an ACL user with a password ----------------------------------------------------------


async def test_an_acl_user_with_a_password_works_end_to_end_and_a_wrong_one_is_one_line(
    daemon_factory: Any, tmp_root: Path, redises: list[TcpRedis]
) -> None:
    secret = "s3cr3t-acl-pass"
    acl = TcpRedis(
        tmp_root, "--user", "default", "off", "--user", "ccxd", "on", f">{secret}", "~*", "&*", "+@all"
    )
    redises.append(acl.start())
    acl.cli_options = ["--user", "ccxd", "--pass", secret, "--no-auth-warning"]
    url = f"redis://ccxd:{secret}@127.0.0.1:{acl.port}/0"
    d = daemon_factory(extra_env={"CCXD_REDIS_URL": url})
    job_id, out = await run_job(d, "echo through-acl")
    assert out == b"through-acl\n"
    d.stop()
    assert acl.cli("EXISTS", keys.ALL_JOBS).strip() == b"1"
    d2 = daemon_factory(extra_env=d.env, root=d.root)  # a restart reads the history back
    assert job_id in await stored_jobs(d2)
    for where in (d2.log(), ccxctl(d2, "status").stdout.decode()):
        assert secret not in where
    printed = subprocess.run([*d2.command, "--print-config"], env=d2.env, capture_output=True, check=True)
    assert secret.encode() not in printed.stdout
    assert f"redis://ccxd:***@127.0.0.1:{acl.port}/0".encode() in printed.stdout

    wrong = daemon_factory(extra_env={"CCXD_REDIS_URL": url.replace(secret, "not-it")}, start=False)
    res = run_ccxd(wrong)
    assert res.returncode == 69, res
    line = single_line(res)
    assert "cannot reach the store" in line and "not-it" not in line, line
    assert "password" in line.lower(), line


# -- (3) rediss:// with a CA of our own -------------------------------------------------------


def make_pki(where: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    openssl = require_tool("openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=where, capture_output=True, check=True, timeout=60)

    (where / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    (where / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for ca in ("ca", "other-ca"):
        run(
            "req",
            "-x509",
            *ec,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN={ca}",
        )
    for name in ("server", "client"):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=ccxd-test-{name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return {
        p.stem if p.suffix == ".crt" else p.stem + "-key": p
        for p in where.iterdir()
        if p.suffix in (".crt", ".key")
    }


async def test_rediss_with_a_test_ca_works_end_to_end_and_another_ca_is_refused(
    daemon_factory: Any, tmp_root: Path, redises: list[TcpRedis]
) -> None:
    pki_dir = tmp_root / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir)
    server = TcpRedis(
        tmp_root,
        "--tls-cert-file", str(pki["server"]), "--tls-key-file", str(pki["server-key"]),
        "--tls-ca-cert-file", str(pki["ca"]), "--tls-auth-clients", "yes",
        tls=True,
    )  # fmt: skip
    redises.append(server.start())
    server.cli_options = [
        "--tls",
        "--cacert",
        str(pki["ca"]),
        "--cert",
        str(pki["client"]),
        "--key",
        str(pki["client-key"]),
    ]
    tls_env = {
        "CCXD_REDIS_URL": f"rediss://127.0.0.1:{server.port}/0",  # the client certificate authenticates
        "CCXD_REDIS_TLS_CA_FILE": str(pki["ca"]),
        "CCXD_REDIS_TLS_CERT_FILE": str(pki["client"]),
        "CCXD_REDIS_TLS_KEY_FILE": str(pki["client-key"]),
    }
    d = daemon_factory(extra_env=tls_env)
    job_id, out = await run_job(d, "echo over-tls")
    assert out == b"over-tls\n"
    d.stop()
    assert server.cli("EXISTS", keys.ALL_JOBS).strip() == b"1"
    d2 = daemon_factory(extra_env=d.env, root=d.root)
    assert job_id in await stored_jobs(d2)
    d2.stop()

    # A server whose certificate does not chain to the configured CA is not talked to.
    impostor = daemon_factory(
        extra_env=dict(tls_env, CCXD_REDIS_TLS_CA_FILE=str(pki["other-ca"])), start=False
    )
    res = run_ccxd(impostor)
    assert res.returncode == 69 and "certificate verify failed" in single_line(res), res
    # Without a client certificate, rediss:// alone does not authenticate: refused like redis://.
    bare = {k: v for k, v in tls_env.items() if "CERT_FILE" not in k and "KEY_FILE" not in k}
    res = run_ccxd(daemon_factory(extra_env=bare, start=False))
    assert res.returncode == 78 and "no password" in single_line(res), res


# -- (4) a forged waiting retry ---------------------------------------------------------------


@pytest.fixture
def claude_home() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ccxd-claude-home-") as d:
        yield Path(d)


@pytest.fixture
def limited_api() -> Iterator[Any]:
    pytest.importorskip("tests.claude.fake_api", reason="needs the fake Anthropic API")
    from tests.claude.test_claude_retry import LimitedApi

    api = LimitedApi(int(time.time()) + 12).start()
    yield api
    api.stop()


async def test_a_forged_waiting_retry_is_not_run_and_the_genuine_one_is(
    daemon_factory: Any,
    claude_home: Path,
    limited_api: Any,
    attacker: int,
    lair: Path,
    redises: list[TcpRedis],
) -> None:
    from tests.claude.cli import claude_env
    from tests.claude.conftest import claude_path
    from tests.claude.fake_api import Stream
    from tests.claude.test_claude_retry import claude_argv

    claude_bin = claude_path()
    limited_api.default = Stream(text="the genuine attempt ran")
    shared = TcpRedis(lair, user=ATTACKER).start()  # a password-less Redis the victim accepted
    redises.append(shared)
    env = claude_env(limited_api, claude_home, gateway=True)
    env.update(
        CCXD_REDIS_URL=f"redis://127.0.0.1:{shared.port}",
        CCXD_REDIS_ALLOW_UNAUTHENTICATED="true",
        CCXD_CLAUDE_USAGE_LIMIT_MARGIN="0.5",
    )
    d = daemon_factory(extra_env=env, root=claude_home / "ccxd")
    c = await d.client()
    node = (await c.status()).node
    first = await c.start(claude_argv(claude_bin), subscribe=True, cwd=str(claude_home))
    retry = None
    async for ev in c.events(first.id):
        if isinstance(ev, JobRetry):
            retry = ev
    assert retry is not None and retry.wait_until is not None
    await c.close()
    d.stop()  # the genuine waiting attempt is saved in the shared Redis

    # The other user rewrites the state as ccxd writes it: three attempts of its own.
    key = keys.claude_state(node)
    stored = shared.cli("GET", key, user=ATTACKER).removesuffix(b"\n")
    state = json.loads(stored)
    assert [p["body"]["job_id"] for p in state["pending"]] == [retry.next_job_id]
    genuine = state["pending"][0]
    markers = [claude_home / f"pwned-{n}" for n in range(3)]
    forged_ids = [retry.next_job_id[:-4] + f"f00{n}" for n in range(3)]
    macs = ["", "ab" * 32, genuine["mac"]]  # none, made up, and the genuine one copied over
    forged = []
    for job_id, marker, mac in zip(forged_ids, markers, macs, strict=True):
        body = dict(genuine["body"], job_id=job_id, wait_until=None)
        body["params"] = {"command": ["touch", str(marker)], "timeout": 0}
        forged.append({"body": body, "mac": mac})
    assert stored.endswith(b"]}")  # spliced in after the genuine attempt, whose bytes stay as they were
    stored = stored[:-2] + b"," + json.dumps(forged)[1:-1].encode() + b"]}"
    shared.cli("-x", "SET", key, user=ATTACKER, stdin=stored)

    d2 = daemon_factory(extra_env=d.env, root=claude_home / "ccxd")
    c2 = await d2.client()
    # The victim's own waiting attempt came back and runs at the reset.
    waiting = await c2.get(retry.next_job_id)
    assert waiting.state == "queued" and waiting.wait_until == pytest.approx(retry.wait_until)
    done = [ev.job async for ev in c2.follow(retry.next_job_id) if isinstance(ev, JobFinished)]
    assert done[0].exit_code == 0 and done[0].retry_of == first.id
    assert not [m for m in markers if m.exists()]  # seconds after they would have run
    for job_id in forged_ids:
        with pytest.raises(RemoteError, match="no job with id"):
            await c2.get(job_id)
        assert f"pending attempt {job_id!r} in the store has no valid MAC: not run" in d2.log()
    history = await c2.call("history.list", HistoryParams(limit=20))
    assert {first.id, retry.next_job_id} <= {j.id for j in history.jobs}
    await c2.close()
    d2.stop()
    left = json.loads(shared.cli("GET", key))
    assert left["pending"] == []  # the forged attempts are gone from the store too
    assert os.stat(d2.state / "ccxd" / "store.key").st_mode & 0o777 == 0o600
