"""A private redis-server that ccxd starts, watches and stops itself.

It listens only on a Unix socket in the runtime directory (no TCP port) and
keeps an append-only file in the state directory.  If it dies it is restarted
(with back-off); on exit it is asked to stop, so it saves its data.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from ccxd.proc.reaper import ExitStatus, Reaper
from ccxd.proc.spawn import SpawnError, spawn

__all__ = ["EmbeddedRedis", "RedisMissing"]

log = logging.getLogger("ccxd.store")

INSTALL_HINT = (
    "sudo apt install redis-server (or brew install redis); "
    'or point redis_url at a Redis, or set store = "memory" (history is lost on restart)'
)
"""What to do without redis-server: why the OS package and not a bundled one is in
docs/decisions/21-redis-for-pip-installs.md."""


AOF_REWRITE_PERCENTAGE = 50
"""Rewrite the append-only file once its command log grew by this % of the last snapshot."""


class RedisMissing(Exception):
    """redis-server is not installed."""


class EmbeddedRedis:
    """Runs ``redis-server`` for this daemon alone."""

    def __init__(self, runtime_dir: Path, data_dir: Path, reaper: Reaper) -> None:
        self.socket_path = runtime_dir / "redis.sock"
        self.pidfile = runtime_dir / "redis.pid"
        self.data_dir = data_dir
        self.reaper = reaper
        self.pid: int | None = None
        self.restarts = 0
        self._watch: asyncio.Task[None] | None = None
        self._exited: asyncio.Future[ExitStatus] | None = None
        self._stopping = False
        self.loading = False
        """True while the server answers that it is loading its data (a big append-only file)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisMissing(f"the embedded store needs redis-server, which is not on PATH: {INSTALL_HINT}")
        self.binary = binary
        # A ccxd that is SIGKILLed and not started again must not leave its private
        # redis-server running for good: it gets SIGTERM (and saves) when we die.
        # setpriv is Linux's (util-linux); elsewhere the next start stops a leftover.
        setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
        self._prefix = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []

    @property
    def running(self) -> bool:
        """Whether the server started by the last :meth:`start` is still alive."""
        return self._exited is not None and not self._exited.done()

    @property
    def url(self) -> str:
        """The URL the store connects to."""
        return f"unix://{self.socket_path}"

    def _argv(self) -> list[str]:
        return [
            *self._prefix,
            self.binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            # A restart loads the append-only file before it answers: keep most of it a
            # compact RDB snapshot (the preamble) and its command log short (a rewrite once
            # the log reaches half the snapshot), docs/decisions/25-store-restart.md.
            "--aof-use-rdb-preamble",
            "yes",
            "--auto-aof-rewrite-percentage",
            str(AOF_REWRITE_PERCENTAGE),
            "--auto-aof-rewrite-min-size",
            "64mb",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            "--databases",
            "1",
            "--pidfile",
            str(self.pidfile),
        ]

    async def start(self, timeout: float = 15.0) -> None:
        """Start redis-server and wait until it answers PING."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._stop_leftover()
        self.socket_path.unlink(missing_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        try:
            proc = spawn(self._argv(), str(self.data_dir), env, with_input=False)
        except SpawnError as exc:
            raise RedisMissing(f"cannot start redis-server: {exc}") from None
        self.pid = proc.pid
        exited = self._exited = self.reaper.watch(proc.pid)
        loop = asyncio.get_running_loop()
        # redis logs to stdout; forward its lines to our log.
        for fd in (proc.stdout, proc.stderr):
            loop.add_reader(fd, self._forward, fd)
        started = loop.time()
        deadline = started + timeout
        while (answer := await _answer(self.socket_path)) != _PONG:
            if exited.done():
                raise RedisMissing(f"redis-server exited at start ({exited.result()})")
            if answer.startswith(_LOADING):
                # Loading a big append-only file takes as long as it takes; a server that
                # answers is alive, and starting a second one on the same files is worse.
                if not self.loading:
                    log.info("redis-server %d is loading its data (%s)", proc.pid, _data_size(self.data_dir))
                self.loading = True
                deadline = loop.time() + timeout
            elif loop.time() > deadline:
                await self._kill_unanswering(exited)
                raise RedisMissing(f"redis-server did not answer within {timeout:.0f}s")
            await asyncio.sleep(0.02)
        if self.loading:
            log.info("redis-server %d loaded its data in %.1fs", proc.pid, loop.time() - started)
        self.loading = False
        log.info("embedded redis-server %d on %s", proc.pid, self.socket_path)
        self._watch = loop.create_task(self._supervise(exited))

    async def _kill_unanswering(self, exited: asyncio.Future[ExitStatus]) -> None:
        """End a server that never answered, so that the next start does not run a second one on its files."""
        if self.pid is None or exited.done():
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
            await asyncio.wait_for(asyncio.shield(exited), 5.0)
        except (ProcessLookupError, TimeoutError):
            pass

    async def _stop_leftover(self) -> None:
        """Stop a redis-server a killed ccxd left running on our files.

        Two servers must never share one append-only file; the old one is asked
        to stop (it saves) and waited for.
        """
        try:
            pid = int(self.pidfile.read_text().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            return
        if b"redis-server" not in cmdline or pid == self.pid:
            return
        log.warning("stopping redis-server %d left by a previous ccxd", pid)
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not gone.done():
                gone.set_result(None)

        loop.add_reader(fd, on_exit)
        try:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
            await asyncio.wait_for(gone, 10.0)
        except TimeoutError:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    def _forward(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
            return
        for line in data.decode(errors="replace").splitlines():
            if line.strip():
                log.info("redis-server: %s", line.strip())

    async def _supervise(self, exited: asyncio.Future[ExitStatus]) -> None:
        # Shielded: cancelling this watcher (on stop) must not cancel the exit future
        # that stop() still waits on.
        status = await asyncio.shield(exited)
        if self._stopping:
            return
        self.restarts += 1
        delay = min(0.1 * 2 ** min(self.restarts, 6), 5.0)
        log.error("embedded redis-server died (%s); restarting in %.1fs", status, delay)
        await asyncio.sleep(delay)
        while not self._stopping:
            try:
                await self.start()
                return
            except RedisMissing as exc:
                log.error("restarting redis-server failed: %s", exc)
                await asyncio.sleep(5.0)

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask redis-server to stop (it writes its append-only file) and wait."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        fut = self._exited
        if self.pid is None or fut is None or fut.done():
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)


_PONG = b"+PONG"
_LOADING = b"-LOADING"


async def _answer(path: Path) -> bytes:
    """The first line of the server's answer to PING (``+PONG``, ``-LOADING …``), or b"" without one."""
    if not path.exists():
        return b""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return b""
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 2.0)
        return line.rstrip()
    except (OSError, TimeoutError):
        return b""
    finally:
        writer.close()


def _data_size(data_dir: Path) -> str:
    """The size of the append-only files, for the log."""
    try:
        size = sum(p.stat().st_size for p in (data_dir / "appendonlydir").iterdir())
    except OSError:
        return "size unknown"
    return f"{size / (1 << 20):,.0f} MiB"
