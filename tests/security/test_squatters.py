"""Another local user poses as ccxd: ccxctl refuses in one line and sends it nothing.

Every attack is made for real by the ``ccxd-attacker`` uid (see conftest.py);
the victim is the test's own user with XDG_RUNTIME_DIR unset, as under cron,
``sudo -u`` or ssh without logind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess
from tests.security.conftest import (
    ATTACKER,
    ccxctl,
    mark_as_test_dir,
    one_line_refusal,
    outward_address,
    victim_env,
)

SECRET_ENV = "ANTHROPIC_API_KEY=sk-ant-victim-secret"
COMMAND = "deploy --password hunter2"
TOKEN = "victim-token-0123456789-abcdefghij"


def assert_nothing_secret(record: bytes) -> None:
    for secret in (b"sk-ant-victim-secret", b"hunter2", b"deploy", TOKEN.encode()):
        assert secret not in record, record


# -- Unix socket --------------------------------------------------------------------


def test_a_squatted_fallback_directory_gets_no_command_env_or_token(fallback_dir: Path, squat, attacker: int):
    """The attacker made /tmp/ccxd-UID first and serves a fake ccxd there."""
    fake = squat("unix", str(fallback_dir / "ccxd.sock"))
    runs = [
        ccxctl("run", "--env", SECRET_ENV, COMMAND),  # the fast path (no typer)
        ccxctl("run", "--env", SECRET_ENV, "--tag", "x", "--", *COMMAND.split()),
        ccxctl("status"),  # the typer path, through the async client library
    ]
    doctor = ccxctl("doctor")
    record, connections = fake.stop()
    assert doctor.returncode == 1 and b"Traceback" not in doctor.stdout + doctor.stderr
    assert any(
        line.startswith("FAIL") and "daemon" in line and f"owned by uid {attacker}" in line
        for line in doctor.stdout.decode().splitlines()
    ), doctor.stdout
    for res in runs:
        line = one_line_refusal(res)
        assert res.returncode == 77, line
        assert f"refusing {fallback_dir}/ccxd.sock" in line, line
        assert f"owned by uid {attacker} ({ATTACKER})" in line, line
    assert record == b"" and connections == 0


async def test_the_client_library_refuses_a_squatted_fallback_directory(fallback_dir: Path, squat, monkeypatch):
    from ccxd.client import UntrustedDaemon, connect

    fake = squat("unix", str(fallback_dir / "ccxd.sock"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("CCXD_SOCKET", raising=False)
    monkeypatch.delenv("CCXD_URL", raising=False)
    with pytest.raises(UntrustedDaemon, match=ATTACKER):
        await connect()
    assert fake.stop() == (b"", 0)


def test_a_socket_served_by_another_uid_is_refused_after_connecting(tmp_path: Path, lair: Path, squat, attacker: int):
    """The directory is the victim's own, but the socket there leads to the attacker's server (SO_PEERCRED)."""
    fake = squat("unix", str(lair / "den" / "fake.sock"))
    mine = tmp_path / "run"
    mine.mkdir(mode=0o700)
    (mine / "ccxd.sock").symlink_to(fake.where)
    res = ccxctl("run", "--socket", str(mine / "ccxd.sock"), "--env", SECRET_ENV, COMMAND)
    res2 = ccxctl("--socket", str(mine / "ccxd.sock"), "ps")
    record, connections = fake.stop()
    for r in (res, res2):
        line = one_line_refusal(r)
        assert r.returncode == 77 and f"served by uid {attacker} ({ATTACKER})" in line, line
    assert connections == 2 and record == b""


def test_a_socket_path_in_a_directory_others_can_write_is_refused(lair: Path, squat, attacker: int):
    """socket_path in a shared, sticky directory (like /tmp): the attacker was there first."""
    shared = lair / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    fake = squat("unix", str(shared / "ccxd.sock"))
    res = ccxctl("run", "--socket", fake.where, "--env", SECRET_ENV, COMMAND)
    record, connections = fake.stop()
    line = one_line_refusal(res)
    assert res.returncode == 77 and "other users can write to its directory" in line, line
    assert record == b"" and connections == 0


def test_ccxd_refuses_a_socket_path_others_could_squat(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    d = DaemonProcess(tmp_path / "d", extra_env={"CCXD_SOCKET_PATH": str(shared / "ccxd.sock")})
    res = subprocess.run([sys.executable, "-m", "ccxd"], env=d.env, capture_output=True, timeout=60)
    assert res.returncode == 78, res.stderr
    assert b"other users can write to its directory" in res.stderr
    assert not (shared / "ccxd.sock").exists()


def test_ccxd_never_follows_a_lock_file_symlink_planted_by_another_user(fallback_dir: Path, tmp_path: Path):
    """/tmp/ccxd-UID was left open (mode 0777); the attacker planted ccxd.sock.lock -> a file of the victim's."""
    fallback_dir.mkdir()
    mark_as_test_dir(fallback_dir)
    os.chmod(fallback_dir, 0o777)
    precious = tmp_path / "precious"
    precious.write_text("the victim's data\n")
    subprocess.run(
        ["runuser", "-u", ATTACKER, "--", "ln", "-s", str(precious), str(fallback_dir / "ccxd.sock.lock")],
        check=True,
        cwd="/",
    )
    assert (fallback_dir / "ccxd.sock.lock").lstat().st_uid != os.getuid()
    d = DaemonProcess(tmp_path / "d")
    env = {k: v for k, v in d.env.items() if k != "XDG_RUNTIME_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "ccxd"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # it started: it followed the link
            proc.kill()
            proc.wait()
    assert precious.read_text() == "the victim's data\n"
    assert proc.returncode == 78, err
    lines = err.decode().strip().splitlines()
    assert "Traceback" not in err.decode() and "symbolic link" in lines[-1], err


# -- TCP --------------------------------------------------------------------------


def test_a_loopback_port_squatter_gets_no_token_and_no_bytes(tmp_path: Path, squat, attacker: int):
    """The attacker listens on 127.0.0.1:PORT before ccxd; ccxctl --url sends it nothing at all."""
    fake = squat("tcp", "127.0.0.1")
    url = f"ws://127.0.0.1:{fake.where}/ws"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    runs = [
        ccxctl("--url", url, "--token-file", str(token_file), "run", "--env", SECRET_ENV, COMMAND),
        ccxctl("run", "--url", url, "--env", SECRET_ENV, COMMAND, env=victim_env(CCXD_TOKEN=TOKEN)),
        ccxctl("--url", url, "status", env=victim_env(CCXD_TOKEN=TOKEN)),
        ccxctl("--url", url, "ps"),  # no token at all: still nothing for a foreign server
    ]
    record, connections = fake.stop()
    for res in runs:
        line = one_line_refusal(res)
        assert res.returncode == 77, line
        assert f"port {fake.where} is served by uid {attacker} ({ATTACKER})" in line, line
    assert connections == len(runs) and record == b""


def test_a_network_port_squatter_never_gets_the_token(tmp_path: Path, squat):
    """Not loopback: the server must prove it knows the token before anything else is sent.

    The squatter answers the upgrade with 101, as a server without authentication
    would; ccxctl sent it a nonce and nothing else, and refuses to go on.
    """
    host = outward_address()
    fake = squat("tcp", "0.0.0.0")
    url = f"ws://{host}:{fake.where}/ws"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    res = ccxctl("--url", url, "--token-file", str(token_file), "run", "--env", SECRET_ENV, COMMAND)
    res2 = ccxctl("--url", url, "ps")  # without a token, an unproven server gets no request either
    record, connections = fake.stop()
    for r in (res, res2):
        line = one_line_refusal(r)
        assert r.returncode == 77 and "without proving it knows the token" in line, line
    assert connections == 2
    assert_nothing_secret(record)
    text = record.decode("latin-1")
    assert "authorization" not in text.lower() and "token=" not in text and "ccxd.bearer" not in text
    # Two upgrade requests, each only a head: no frame (no request, no environment) followed.
    heads = text.split("\r\n\r\n")
    assert len(heads) == 3 and heads[-1] == "" and all(h.startswith("GET /ws HTTP/1.1") for h in heads[:2])
    assert "Ccxd-Client-Nonce: " in heads[0]
