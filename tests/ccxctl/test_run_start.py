"""``ccxctl run``'s fast start: no msgspec, protocol Structs, pathlib or typing, and the same bytes and words.

The fast path speaks JSON with :mod:`ccxd.wire`'s names; these tests hold it to
the protocol's Structs and to what a user sees.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

import ccxd
from ccxctl.fastpath import parse_run
from ccxctl.runjob import chunk_bytes, default_socket_path, exit_code_for, finish_note
from ccxd.client.connection import default_socket
from ccxd.protocol import JobInfo, JobState, OutputChunk, StartParams
from tests.ccxctl.test_run_options import CASES

REPO = Path(ccxd.__file__).resolve().parent.parent
HEAVY = ("msgspec", "typing", "pathlib", "socket", "ipaddress", "typer", "asyncio", "inspect", "dataclasses")
SLOW_TO_IMPORT = (*HEAVY, "json", "re", "enum", "signal")  # --json alone may import json (so re and enum)


def run_fast(daemon: Any, *args: str) -> tuple[subprocess.CompletedProcess[bytes], list[str]]:
    """``ccxctl run ARGS`` in a Python without site-packages; also the slow modules it imported.

    Without site-packages, a slow module it needed would not even be there, and the
    dev install's import hook (which imports pathlib itself) stays out of the count.
    """
    report = (
        "import sys; from ccxctl.__main__ import main; code = main(sys.argv[1:]); sys.stdout.flush(); "
        f"slow = sorted(m for m in sys.modules if m.split('.')[0] in {SLOW_TO_IMPORT!r} "
        "or m.startswith('ccxd.protocol')); "
        "sys.stderr.flush(); sys.stderr.buffer.write(b'@@slow:' + ' '.join(slow).encode()); sys.exit(code)"
    )
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket), PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-S", "-c", report, *args], env=env, capture_output=True, timeout=60, check=False
    )
    err, _, slow = res.stderr.rpartition(b"@@slow:")
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout, err), slow.decode().split()


def test_run_imports_nothing_slow_and_exits_with_the_job_code(daemon: Any) -> None:
    res, slow = run_fast(daemon, "run", "echo out; echo err >&2; exit 3")
    assert (res.stdout, res.stderr, res.returncode) == (b"out\n", b"err\n", 3)
    assert slow == []


def test_binary_output_comes_out_byte_for_byte_on_both_streams(daemon: Any, tmp_root: Path) -> None:
    data = os.urandom(3 << 20) + b"\xff\xfe\0 not UTF-8 \xc3"
    blob = tmp_root / "blob"
    blob.write_bytes(data)
    res, slow = run_fast(daemon, "run", f"cat {blob}; cat {blob} >&2")
    assert res.returncode == 0 and slow == []
    assert res.stdout == data and res.stderr == data


def test_json_shows_each_chunk_and_its_base64_gives_the_bytes(daemon: Any, tmp_root: Path) -> None:
    data = bytes(range(256)) * 64
    blob = tmp_root / "blob"
    blob.write_bytes(data)
    # The text on stderr: a chunk never holds two streams, so it is never joined to the binary
    # tail (which would make the chunk base64).
    res, slow = run_fast(daemon, "run", "--json", f"cat {blob}; printf 'h\\303\\251 \\342\\234\\223' >&2")
    assert res.returncode == 0 and not {m.split(".")[0] for m in slow} & {*HEAVY, "ccxd"}
    events = [json.loads(line) for line in res.stdout.splitlines()]
    chunks = [msgspec.convert(e["data"], OutputChunk) for e in events if e["event"] == "job.output"]
    assert b"".join(c.raw() for c in chunks) == data + "hé ✓".encode()
    assert "é ✓".encode() in res.stdout  # text as UTF-8, as the daemon sent it, not \\u escapes
    assert events[-1]["event"] == "job.finished" and events[-1]["data"]["job"]["exit_code"] == 0


def test_a_refused_option_says_what_the_daemon_said(daemon: Any) -> None:
    res, slow = run_fast(daemon, "run", "--memory", "2X", "true")
    assert res.returncode == 2 and res.stdout == b"" and slow == []
    assert b'got "2X"' in res.stderr and len(res.stderr.splitlines()) == 1


@pytest.mark.parametrize("args", [*CASES, ["--where", "gpu=1", "--node", "n1", "--retry-on-node-loss", "x"]])
def test_the_start_params_are_the_protocols_start_params(args: list[str]) -> None:
    opts = parse_run(args)
    assert opts is not None
    for remote in (False, True):
        params = opts.start_params(remote=remote)
        strict = msgspec.convert(params, StartParams)  # StartParams forbids unknown fields
        for name, value in params.items():  # each value as the protocol reads it
            assert msgspec.to_builtins(getattr(strict, name)) == value, name
        # Defaults are left out, so a daemon older than a field still takes the request.
        assert not {k for k, v in params.items() if v in ({}, []) or v is False}
    assert opts.start_params().get("binary", False) is not (opts.detach or opts.json)


def job(**fields: Any) -> dict[str, Any]:
    """A finished job as the daemon sends it."""
    info = JobInfo(id="j1", state=JobState.FINISHED, command="x", **fields)
    as_json: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(info))
    return as_json


@pytest.mark.parametrize(
    ("fields", "note", "code"),
    [
        ({"reason": "exited", "exit_code": 4}, None, 4),
        ({"reason": "signaled", "signal": 9}, None, 137),
        ({"reason": "failed_to_start", "error": "cwd /x does not exist"}, "could not start: cwd /x", 127),
        ({"reason": "dependency_failed", "error": "j0 failed"}, "did not run: j0 failed", 127),
        ({"reason": "timeout", "timeout": 0.5, "signal": 15}, "stopped: timeout after 0.5s", 124),
        ({"reason": "idle_timeout", "idle_timeout": 2.0}, "stopped: idle timeout after 2s", 124),
        ({"reason": "timeout", "timeout": 60.0, "timeout_silence": 5.0}, "stopped: timeout: estimated", 124),
        ({"reason": "oom", "error": "memory limit 1M", "signal": 9}, "killed: memory limit 1M", 137),
    ],
)
def test_a_finished_job_is_told_and_exits_as_its_record_says(
    fields: dict[str, Any], note: str | None, code: int
) -> None:
    said = finish_note(job(**fields))
    assert said == note if note is None else said is not None and said.startswith(f"job j1 {note}")
    assert exit_code_for(JobInfo(id="j1", state=JobState.FINISHED, command="x", **fields)) == code


def test_output_sent_as_json_gives_the_same_bytes() -> None:
    for raw in (b"plain text\n", b"\xff\xfe binary\0"):
        chunk = OutputChunk(job_id="j", stream="stdout", seq=0, offset=0, data="", encoding="utf-8")
        try:
            chunk.data = raw.decode()
        except UnicodeDecodeError:
            chunk.data, chunk.encoding = base64.b64encode(raw).decode(), "base64"
        assert chunk_bytes(msgspec.to_builtins(chunk)) == raw == chunk.raw()


@pytest.mark.parametrize("runtime", [None, "/run/user/1234", "relative/dir"])
def test_the_default_socket_is_the_client_librarys(
    runtime: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CCXD_SOCKET", raising=False)
    if runtime is None:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    assert default_socket_path() == str(default_socket())
    monkeypatch.setenv("CCXD_SOCKET", "/elsewhere/d.sock")
    assert default_socket_path() == str(default_socket()) == "/elsewhere/d.sock"
