"""The one way ccxd opens a Redis client: redis://, rediss://, unix:// or through Sentinel.

A Sentinel client asks the sentinels for the primary on every new connection,
so after a failover its next connection reaches the promoted replica by itself
(redis-py's ``Sentinel.master_for``).  Closing the client closes the
sentinels' connections too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError

from ccxd.redis_url import SentinelURL, is_sentinel, parse_sentinel
from ccxd.store.packing import FastPacking

__all__ = ["OnConnect", "describe_target", "explain", "open_redis"]

OnConnect = Callable[[AbstractConnection], Awaitable[None]]
"""Called on every new connection after its handshake (AUTH, SELECT), before its first command."""


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A sentinel pool that waits for a free connection instead of failing (as the plain store's pool)."""


class _SentinelRedis(aioredis.Redis):
    """A client of the primary that also closes the sentinels' connections."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client and the sentinels' clients."""
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.sentinels is not None:
                await self.sentinels.aclose()


def describe_target(url: str) -> str:
    """``redis`` or ``redis (sentinel SERVICE via HOST:PORT,…)``, without secrets (no I/O)."""
    if is_sentinel(url):
        return f"redis ({parse_sentinel(url).describe()})"
    return "redis"


async def explain(client: aioredis.Redis, service: str) -> str:
    """Why no sentinel of ``client`` (from :func:`open_redis`) names a primary for ``service``: one line."""
    sentinels = getattr(client, "sentinels", None)
    if not isinstance(sentinels, Sentinel):
        return "not a sentinel client"
    said: dict[str, list[str]] = {}  # what sentinels said → which said it
    for s in sentinels.sentinels:
        kwargs = s.connection_pool.connection_kwargs
        where = f"{kwargs.get('host')}:{kwargs.get('port')}"
        try:
            found = await s.sentinel_masters()
        except AuthenticationError as exc:
            what = f"refused the sentinel credentials ({str(exc).rstrip('.')}; check sentinel_password)"
        except (RedisError, OSError) as exc:
            what = str(exc) or type(exc).__name__
        else:
            masters = found if isinstance(found, dict) else {str(m.get("name")): m for m in found}
            state = masters.get(service)
            if state is None:
                what = f"monitor no service {service!r} (only {', '.join(masters) or 'none'})"
            elif state.get("is_sdown") or state.get("is_odown"):
                what = f"see the primary {state['ip']}:{state['port']} down (failing over?)"
            else:
                what = f"name the primary {state['ip']}:{state['port']}"
        said.setdefault(what, []).append(where)
    return "; ".join(f"{', '.join(where)}: {what}" for what, where in said.items())


def open_redis(
    url: str,
    *,
    timeout: float = 2.0,
    socket_timeout: float | None = -1.0,
    max_connections: int = 1,
    decode_responses: bool = False,
    tls_ca_file: str = "",
    tls_cert_file: str = "",
    tls_key_file: str = "",
    on_connect: OnConnect | None = None,
) -> aioredis.Redis:
    """A client of ``url`` (not yet connected: the first command connects).

    ``timeout`` bounds connecting and waiting for one of the ``max_connections``
    connections; ``socket_timeout`` each answer (-1: ``timeout``; None: no limit,
    for blocking reads).  Commands are not retried: a failure is the caller's to
    see (the store journals).  Raises ValueError for a sentinel URL that does not
    parse (config validation refuses those first).
    """
    read_timeout = timeout if socket_timeout == -1.0 else socket_timeout
    common: dict[str, Any] = {
        "socket_timeout": read_timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 0,
        "retry_on_timeout": False,
        "decode_responses": decode_responses,
    }
    if on_connect is not None:
        common["redis_connect_func"] = _after_handshake(on_connect)
    if is_sentinel(url):
        target = parse_sentinel(url)
        return _open_sentinel(
            target, common, max_connections, timeout, _tls(tls_ca_file, tls_cert_file, tls_key_file)
        )
    plain_tls = _tls(tls_ca_file, tls_cert_file, tls_key_file) if url.startswith("rediss://") else {}
    # One connection shared in turn by default: a pool that grows with concurrency would
    # keep its extra connections (and descriptors) for good after a burst or a reconnect.
    pool = BlockingConnectionPool.from_url(
        url, **plain_tls, **common, max_connections=max_connections, timeout=timeout
    )
    _fast(pool)
    return aioredis.Redis.from_pool(pool)


def _open_sentinel(
    target: SentinelURL, common: dict[str, Any], max_connections: int, timeout: float, tls: dict[str, Any]
) -> aioredis.Redis:
    ssl: dict[str, Any] = {"ssl": True, **tls} if target.tls else {}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels,
        sentinel_kwargs={
            "username": target.sentinel_username,
            "password": target.sentinel_password,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # One try per sentinel and question: the store's probe asks again every second.
            "retry": Retry(NoBackoff(), 0),
            **ssl,
        },
    )
    client = sentinel.master_for(
        target.service,
        redis_class=_SentinelRedis,
        connection_pool_class=_BlockingSentinelPool,
        connection_class=SentinelManagedSSLConnection if target.tls else SentinelManagedConnection,
        username=target.username,
        password=target.password,
        db=target.db,
        max_connections=max_connections,
        timeout=timeout,
        **common,
        **(tls if target.tls else {}),
    )
    assert isinstance(client, _SentinelRedis)
    client.sentinels = sentinel
    _fast(client.connection_pool)
    return client


def _fast(pool: aioredis.ConnectionPool) -> None:
    base = pool.connection_class
    pool.connection_class = type(f"Fast{base.__name__}", (FastPacking, base), {})


def _tls(ca_file: str, cert_file: str, key_file: str) -> dict[str, Any]:
    return {
        name: value
        for name, value in (("ssl_ca_certs", ca_file), ("ssl_certfile", cert_file), ("ssl_keyfile", key_file))
        if value
    }


def _after_handshake(callback: OnConnect) -> Callable[[AbstractConnection], Awaitable[None]]:
    async def connect(conn: AbstractConnection) -> None:
        await conn.on_connect()
        await callback(conn)

    return connect
