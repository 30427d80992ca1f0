"""The embedded redis-server's start: a server loading a big store is waited for, one that never answers is ended.

A stand-in ``redis-server`` on PATH plays the slow server (a real one would
need gigabytes of data to load for long): it answers PING the way Redis does
while it loads its append-only file (``-LOADING``), then ``+PONG``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from ccxd.proc.reaper import Reaper
from ccxd.store.embedded import EmbeddedRedis, RedisMissing

FAKE = """\
import os, socket, sys
args = sys.argv[1:]
path = args[args.index("--unixsocket") + 1]
pidfile = args[args.index("--pidfile") + 1]
loading = int(open(os.path.join(args[args.index("--dir") + 1], "loading-pings")).read())
open(pidfile, "w").write(str(os.getpid()))
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(16)
while True:
    conn, _ = srv.accept()
    if loading < 0:
        continue  # accepts, never answers: a hung server
    conn.recv(64)
    if loading:
        loading -= 1
        conn.sendall(b"-LOADING Redis is loading the dataset in memory\\r\\n")
    else:
        conn.sendall(b"+PONG\\r\\n")
    conn.close()
"""


@pytest.fixture
def fake_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "redis-server"
    exe.write_text(f"#!{sys.executable}\n{FAKE}")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return tmp_path


async def _start(root: Path, loading_pings: int) -> tuple[EmbeddedRedis, Reaper]:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "loading-pings").write_text(str(loading_pings))  # the server sees only PATH
    reaper = Reaper(asyncio.get_running_loop())
    reaper.start()
    (root / "run").mkdir(exist_ok=True)
    server = EmbeddedRedis(root / "run", root / "data", reaper)
    server._prefix = []  # the stand-in is not redis-server to setpriv's exec: no difference here
    return server, reaper


async def test_a_server_loading_for_longer_than_the_start_timeout_is_waited_for(fake_redis: Path) -> None:
    # 100 "-LOADING" answers, one every 20 ms: about 2 s of loading against a 0.5 s timeout.
    server, reaper = await _start(fake_redis, 100)
    try:
        await server.start(timeout=0.5)
        assert server.running and not server.loading
    finally:
        await server.stop()
        reaper.stop()


async def test_a_server_that_never_answers_is_ended_not_left_beside_the_next(fake_redis: Path) -> None:
    server, reaper = await _start(fake_redis, -1)
    try:
        with pytest.raises(RedisMissing, match="did not answer"):
            await server.start(timeout=0.3)
        assert server.pid is not None and not os.path.exists(f"/proc/{server.pid}/cmdline")
    finally:
        await server.stop()
        reaper.stop()


async def test_status_says_the_store_is_loading_while_the_server_loads(fake_redis: Path) -> None:
    from ccxd.config import Config
    from ccxd.history.service import History
    from ccxd.store.memory import MemoryStore
    from ccxd.store.writer import StoreWriter

    server, reaper = await _start(fake_redis, 100)
    store = MemoryStore("node")  # the writer's own store: only the embedded server's state is looked at
    history = History(
        Config(), store, StoreWriter(store, fake_redis / "journal", journal_limit=1 << 20), server
    )
    starting = asyncio.get_running_loop().create_task(server.start(timeout=0.5))
    try:
        while not server.loading:
            assert not starting.done(), "the server never said it was loading"
            await asyncio.sleep(0.01)
        assert history.describe() == "memory (embedded): loading its data"
        await starting
        assert history.describe() == "memory (embedded)"
    finally:
        starting.cancel()
        await server.stop()
        reaper.stop()
