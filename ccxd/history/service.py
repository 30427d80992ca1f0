"""History as the daemon uses it: the store, its writer, the recorder, and the embedded Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ccxd import trust
from ccxd.config import Config, redact_url, redis_auth_missing
from ccxd.history.recorder import EstimateSettings, Recorder
from ccxd.proc.reaper import Reaper
from ccxd.store.base import Store, StoreUnavailable
from ccxd.store.embedded import EmbeddedRedis
from ccxd.store.keyfile import load_or_create_key
from ccxd.store.memory import MemoryStore
from ccxd.store.redis_store import RedisStore
from ccxd.store.writer import StoreWriter

__all__ = ["History"]

log = logging.getLogger("ccxd.history")

_RETENTION_INTERVAL = 60.0


def redis_exposure(config: Config) -> str | None:
    """Why ``redis_url`` lets in others, if it does and ``redis_allow_unauthenticated`` says so.

    Logged as a warning; without ``redis_allow_unauthenticated`` it is refused
    (PermissionError, exit 78).  A unix:// socket without a password is fine
    when it is the user's own and nobody else can reach it.
    """
    url = config.redis_url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        has_password = parts.password or any(k.lower() == "password" and v for k, v in parse_qsl(parts.query))
        why = None if has_password else _unix_socket_exposure(Path(parts.path))
    else:
        why = "it has no password" if redis_auth_missing(url, config.redis_tls_cert_file) else None
    if why is None:
        return None
    shown = redact_url(url)
    if not config.redis_allow_unauthenticated:
        raise PermissionError(
            f"redis_url = {shown!r} is refused: {why}, so whoever reaches it could read every job's output "
            "and make this daemon run commands; give it a password (an ACL user), use a socket only you "
            "can reach, or set redis_allow_unauthenticated = true to accept the risk"
        )
    warning = (
        f"redis_url {shown} is unauthenticated ({why}; redis_allow_unauthenticated = true): whoever "
        "reaches it can read every job's output and forge the history shown"
    )
    log.warning("%s", warning)
    return warning


def _unix_socket_exposure(path: Path) -> str | None:
    """Why other users could reach the Redis socket ``path`` or replace it, or None when it is ours alone."""
    try:
        checked = trust.check_socket_dir(path)
        st = os.lstat(checked)
        dst = os.stat(checked.parent)
    except trust.Untrusted:
        return f"its socket {path} is in a directory another user owns or can change"
    except OSError as exc:
        return f"its socket {path} cannot be checked ({exc.strerror})"
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        return f"its socket {path} is not a socket of yours (owned by uid {st.st_uid})"
    others_connect = st.st_mode & 0o022 and dst.st_mode & 0o011
    if others_connect:
        return f"other users can connect to its socket {path} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class History:
    """Everything the daemon keeps beyond its own memory."""

    def __init__(
        self, config: Config, store: Store, writer: StoreWriter, embedded: EmbeddedRedis | None
    ) -> None:
        self.config = config
        self.store = store
        self.writer = writer
        self.embedded = embedded
        self.recorder = Recorder(
            store, writer, self._estimate_settings, output_limit=config.store_output_max_bytes
        )
        self._retention: asyncio.Task[None] | None = None
        self.warning: str | None = None
        """Why the store is open to others (``redis_allow_unauthenticated``), for ``daemon.status``."""

    def _estimate_settings(self) -> EstimateSettings:
        c = self.config
        return EstimateSettings(
            enabled=c.estimate_timeouts,
            default=c.default_timeout,
            k=c.estimate_k,
            min_samples=c.estimate_min_samples,
            bootstrap=c.estimate_bootstrap,
            minimum=c.estimate_min,
            floor=c.estimate_floor,
            silence=c.estimate_silence,
        )

    @classmethod
    async def open(cls, config: Config, reaper: Reaper, runtime_dir: Path, state_dir: Path) -> History:
        """Start the embedded Redis if needed and connect; raises RedisMissing/StoreUnavailable."""
        node = config.resolved_node_id()
        embedded = None
        warning: str | None = None
        store: Store
        if config.store == "memory":
            store = MemoryStore(node, output_limit=config.store_output_max_bytes)
        else:
            url = config.redis_url
            key = load_or_create_key(state_dir / "store.key")
            if not url:
                embedded = EmbeddedRedis(runtime_dir, state_dir / "redis", reaper)
                await embedded.start()
                url = embedded.url
            else:
                warning = redis_exposure(config)
            store = RedisStore(
                url,
                node,
                timeout=config.store_timeout,
                output_limit=config.store_output_max_bytes,
                key=key,
                tls_ca_file=config.redis_tls_ca_file,
                tls_cert_file=config.redis_tls_cert_file,
                tls_key_file=config.redis_tls_key_file,
            )
        await store.open()
        writer = StoreWriter(store, state_dir / "journal", journal_limit=config.journal_max_bytes)
        writer.start()
        history = cls(config, store, writer, embedded)
        history.warning = warning
        return history

    def start_retention(self, *also: Callable[[], Awaitable[object]]) -> None:
        """Prune old history in the background; each round then runs ``also`` (the worktree cleanup)."""
        c = self.config

        def max_age() -> float | None:
            return c.history_max_age_days * 86400 if c.history_max_age_days is not None else None

        self._retention = asyncio.get_running_loop().create_task(
            self.recorder.retention(
                _RETENTION_INTERVAL,
                max_age,
                lambda: c.history_max_jobs,
                lambda: c.history_max_signatures,
                also=also,
            )
        )

    def describe(self) -> str:
        """``redis (embedded)``, ``redis``, ``memory``, or ``… degraded (N pending)``."""
        text = self.writer.describe()
        if self.embedded is not None and self.embedded.loading:
            # A restarted server loads its append-only file (seconds for a big store); writes are journaled.
            text += " (embedded): loading its data"
        elif self.embedded is not None and not self.writer.degraded:
            # Between its death and its restart the writer may not have noticed yet.
            text += " (embedded)" if self.embedded.running else " (embedded): restarting"
        if self.warning is not None:
            text += f"; WARNING: {self.warning}"
        return text

    async def close(self) -> None:
        """Flush writes, stop retention, disconnect and stop the embedded Redis."""
        if self._retention is not None:
            self._retention.cancel()
        await self.writer.close(timeout=5.0)
        with contextlib.suppress(StoreUnavailable):
            await self.store.close()
        if self.embedded is not None:
            await self.embedded.stop()
