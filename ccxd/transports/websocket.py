"""The WebSocket front-end: JSON-RPC over ``ws://`` or ``wss://``, and ``GET /health``.

One text frame carries one JSON-RPC message (or batch) each way; output may
come as binary frames (:func:`ccxd.protocol.encode_output_frame`) to
subscribers that ask.  Every message goes to the dispatcher of the
:class:`SessionHandler` (the cc_executor adapter's: the Unix socket's native
methods, which behave the same on both, and the legacy ones beside them).

Before the handshake, as it is accepted, a connection passes the gate of
:mod:`ccxd.transports.admission` (handshakes in progress, per address, and the
descriptors kept for jobs and the Unix socket) or is closed at once; it then
has ``ws_handshake_timeout`` seconds to log in.
Admission happens in the HTTP opening handshake (``process_request``), before
any WebSocket exists: unknown path 404, blocked address 429, foreign
``Origin`` 403, missing or wrong token 401 (or the challenge of
:mod:`ccxd.protocol.challenge`, whose proof the 101 answer then carries),
connection limit 503.

Limits: incoming messages over ``max_message_bytes`` close the connection with
1009; keepalive pings (``ws_ping_interval``/``ws_ping_timeout``); a connection
that sends nothing and follows no job for ``ws_idle_timeout`` is closed with
1000; a bug closes with 1011.  Writes go straight into the connection's write
buffer and :meth:`drain` waits while it is above the high-water mark, so a
slow reader slows only its own subscriptions (which pull from the job's log)
and never makes a job wait or memory grow.  Compression is off: output is
streamed as fast as possible, and compressing secrets next to attacker-chosen
text invites CRIME-style attacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import logging
import os
import resource
import socket
import ssl
import time
import weakref
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, Protocol, cast

from websockets.asyncio.connection import Connection as _WsConnection
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from ccxd import __version__
from ccxd.access.auth import Authenticator, select_subprotocol
from ccxd.addresses import is_loopback_host
from ccxd.config import Config
from ccxd.protocol import HEALTH_PATH, WS_PATHS, Health, WsClose, encode
from ccxd.rpc.connection import Connection
from ccxd.transports.admission import AdmissionGate, Refusal, Ticket, fd_budget
from ccxd.transports.wsframe import OP_BINARY, frame_header
from ccxd.trust import from_this_machine, local_peer_uid
from ccxd.ui.front import UiFront

__all__ = ["SessionHandler", "StartupRefused", "WebSocketServer"]

log = logging.getLogger("ccxd.transports.ws")

_WRITE_LIMIT = (1024 * 1024, 256 * 1024)  # high, low water marks of the write buffer
_CLOSE_TIMEOUT = 5.0
_LOG_EVERY = 10.0  # seconds between "refused before the handshake" log lines while it lasts
_LOG_PEERS = 256  # addresses counted by name between two of those lines; the rest are "other addresses"


class StartupRefused(PermissionError):
    """The WebSocket front-end cannot start as configured (ccxd exits 78 with this line)."""


class MessageHandler(Protocol):
    """Answers one message of a connection (a :class:`~ccxd.rpc.dispatcher.Dispatcher`)."""

    async def handle(self, raw: bytes, conn: Connection) -> bytes | None:
        """Handle one message; return the reply bytes, or None."""


class SessionHandler(Protocol):
    """What the transport feeds: per-connection open/close hooks, and the dispatcher of messages."""

    @property
    def dispatcher(self) -> MessageHandler:
        """What each message goes to, straight."""

    def open(self, conn: Connection) -> bytes | None:
        """A connection opened; return a first message to send, if any."""

    def close(self, conn: Connection) -> None:
        """The connection is gone."""


class _QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' logger without its DEBUG output, with its INFO lines demoted to DEBUG.

    Its DEBUG output would print request headers, and so tokens.
    """

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and super().isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level <= logging.DEBUG:
            return
        self.logger.log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


class _WsSink:
    """The Sink (and BinarySink) over one websockets connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None

    def write(self, message: bytes) -> None:
        if not self.closing:
            broadcast((self.ws,), message, text=True)

    def write_binary(self, message: bytes) -> None:
        if not self.closing:
            broadcast((self.ws,), message, text=False)

    def write_binary_parts(self, parts: Sequence[bytes]) -> None:
        # Output is the bulk of what we send: the header is built here and the parts
        # go to the kernel as they are (one writev), instead of being copied into a
        # frame by the library.  Whole frames only, so the library's own frames
        # (pings, replies, close) still never interleave with ours.
        ws = self.ws
        if self.closing or ws.send_in_progress is not None:
            return
        size = 0
        for part in parts:
            size += len(part)
        ws.transport.writelines([frame_header(OP_BINARY, size) + parts[0], *parts[1:]])

    async def drain(self) -> None:
        if self.closing:
            return
        try:
            await self.ws.drain()
        except Exception:  # the connection was lost while we waited
            self._closing = True

    @property
    def closing(self) -> bool:
        return self._closing or self.ws.state is not State.OPEN

    def close(self, code: int = WsClose.NORMAL, reason: str = "") -> None:
        if self._closing:
            return
        self._closing = True
        self._close_task = asyncio.get_running_loop().create_task(self.ws.close(code, reason))


class _GatedConnection(ServerConnection):
    """A connection that asks the gate when it is accepted, and is closed there if refused."""

    def __init__(self, front: WebSocketServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.front = front
        self.ticket: Ticket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        verdict = self.front.gate.admit(host, _open_fds)
        if isinstance(verdict, Ticket):
            self.ticket = verdict
            super().connection_made(transport)  # starts the handshake
            return
        # No handshake: set up only what connection_lost needs, and close now.
        _WsConnection.connection_made(self, transport)
        transport.abort()  # type: ignore[attr-defined]
        self.front._refused_on_accept(host, verdict)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ticket is not None:
            self.front.gate.release(self.ticket)
        super().connection_lost(exc)


def _open_fds() -> int:
    """Descriptors this process holds (less the one that counts them)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:
        return 1 << 30  # cannot tell: as good as none left


class WebSocketServer:
    """Accepts WebSocket clients and feeds their messages to the shared dispatcher."""

    def __init__(self, config: Config, auth: Authenticator, started_mono: float | None = None) -> None:
        self.handler: SessionHandler | None = None
        self.config = config
        self.auth = auth
        self.started_mono = time.monotonic() if started_mono is None else started_mono
        self.connections: set[_WsSink] = set()
        self._sock: socket.socket | None = None
        self._ssl: ssl.SSLContext | None = None
        self._server: Server | None = None
        # Refused handshakes linger until the peer hangs up (up to close_timeout).
        self._refused: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        # Headers the 101 answer of an admitted handshake carries (the challenge's proof).
        self._accept_headers: weakref.WeakKeyDictionary[ServerConnection, tuple[tuple[str, str], ...]] = (
            weakref.WeakKeyDictionary()
        )
        # The web dashboard: its pages, its one-time logins, and its cookie on upgrades.
        self.ui = UiFront(
            bool(config.ws_tls_cert), (socket.gethostname(), config.ws_host), config.ws_allowed_origins
        )
        self.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.gate = AdmissionGate(
            config.ws_handshakes_max,
            config.ws_handshakes_per_peer,
            fd_budget(self.fd_limit, config.fd_reserve),
        )
        self._last_log = -_LOG_EVERY
        self._log_timer: asyncio.TimerHandle | None = None
        self._unlogged: dict[str, int] = {}  # refusals not logged yet, per address (bounded)
        self._unlogged_why: dict[Refusal, int] = {}
        # What each accepted connection goes through first (ccxd.transports.http_front: /mcp).
        self.wrap_connection: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None

    # -- lifecycle ------------------------------------------------------------

    def bind(self, activated: socket.socket | None = None) -> None:
        """Load TLS and bind the listening socket (early, so start-up fails fast).

        ``activated`` is a listening socket systemd passed (``ccxd-websocket.socket``);
        it is served instead of binding ws_host:ws_port.
        Raises :class:`StartupRefused` for unusable TLS files or an address in use.
        """
        cfg = self.config
        if cfg.ws_tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_cert_chain(cfg.ws_tls_cert, cfg.ws_tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise StartupRefused(
                    f"cannot load ws_tls_cert {cfg.ws_tls_cert!r} / ws_tls_key {cfg.ws_tls_key!r}: {exc}"
                ) from None
            self._ssl = ctx
        if activated is not None:
            self._sock = activated
            return
        host = cfg.ws_host.strip("[]")
        try:
            infos = socket.getaddrinfo(
                host or None, cfg.ws_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, addr = infos[0]
            self._sock = socket.create_server(addr[:2], family=family, backlog=1024)
        except OSError as exc:
            raise StartupRefused(
                f"cannot listen on {cfg.ws_host}:{cfg.ws_port} for WebSocket clients: {exc.strerror or exc} "
                "(set ws_port, or ws_enabled = false)"
            ) from None
        self._sock.setblocking(False)

    async def start(self, handler: SessionHandler) -> None:
        """Serve ``handler`` on the socket :meth:`bind` made."""
        self.handler = handler
        if self._sock is None:
            self.bind()
        cfg = self.config
        self._server = await serve(
            self._serve,
            sock=self._sock,
            ssl=self._ssl,
            create_connection=cast(Any, self._connection_factory()),
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=self._select_subprotocol,
            compression=None,
            max_size=cfg.max_message_bytes,
            max_queue=16,
            write_limit=_WRITE_LIMIT,
            ping_interval=cfg.ws_ping_interval,
            ping_timeout=cfg.ws_ping_timeout,
            open_timeout=cfg.ws_handshake_timeout,
            close_timeout=_CLOSE_TIMEOUT,
            server_header="ccxd",
            logger=_QuietLogger(logging.getLogger("ccxd.transports.ws.lib"), {}),
        )
        if not cfg.ws_auth:
            log.warning(
                "WebSocket authentication is off for uid %d (ws_auth = false); other users need the token",
                os.getuid(),
            )
        elif self._ssl is None and not is_loopback_host(self.address[0]):
            log.warning(
                "WebSocket on %s without TLS: the token crosses the network in clear text "
                "(set ws_tls_cert and ws_tls_key)",
                self.url,
            )

    def _connection_factory(self) -> Callable[..., Any]:
        gated = functools.partial(_GatedConnection, self)
        return gated if self.wrap_connection is None else self.wrap_connection(gated)

    async def stop(self) -> None:
        """Stop accepting and close every connection (1001 going away).

        A peer that does not read cannot take its close frame: after
        ``close_timeout`` its connection is aborted, so a stop never hangs.
        """
        if self._server is None:
            if self._sock is not None:
                self._sock.close()
            return
        self._server.close()
        if self._log_timer is not None:
            self._log_timer.cancel()
            self._log_refused()
        for ws in list(self._refused):
            ws.transport.abort()
        try:
            await asyncio.wait_for(self._server.wait_closed(), _CLOSE_TIMEOUT)
        except TimeoutError:
            for sink in list(self.connections):
                sink.ws.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), _CLOSE_TIMEOUT)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        assert self._sock is not None
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/ws`` (``wss://`` with TLS), with the real port."""
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"{'wss' if self._ssl is not None else 'ws'}://{host}:{port}{WS_PATHS[0]}"

    # -- handshake ------------------------------------------------------------

    def _refused_on_accept(self, peer: str, why: Refusal) -> None:
        """Count a refusal before the handshake for the log: one line per ``_LOG_EVERY`` seconds at most."""
        if peer in self._unlogged or len(self._unlogged) < _LOG_PEERS:
            self._unlogged[peer] = self._unlogged.get(peer, 0) + 1
        else:
            self._unlogged["other addresses"] = self._unlogged.get("other addresses", 0) + 1
        self._unlogged_why[why] = self._unlogged_why.get(why, 0) + 1
        if self._log_timer is not None:
            return
        wait = max(0.0, self._last_log + _LOG_EVERY - time.monotonic())
        self._log_timer = asyncio.get_running_loop().call_later(wait, self._log_refused)

    def _log_refused(self) -> None:
        self._log_timer = None
        self._last_log = time.monotonic()
        peers = sorted(self._unlogged.items(), key=lambda item: -item[1])
        gate = self.gate
        causes = {
            "handshakes": f"{gate.max_pending} connections had not logged in yet (ws_handshakes_max)",
            "peer": f"{gate.max_per_peer} from the same address had not logged in yet "
            "(ws_handshakes_per_peer)",
            "descriptors": f"the daemon held {gate.budget} of its {self.fd_limit} descriptors, "
            "the rest being kept for jobs and the Unix socket (fd_reserve)",
        }
        log.warning(
            "refused %d WebSocket connection(s) as accepted, before their handshake (%s): %s",
            sum(self._unlogged_why.values()),
            ", ".join(f"{n} from {p}" for p, n in peers[:5]) + (", …" if len(peers) > 5 else ""),
            "; ".join(f"{n} because {causes[why]}" for why, n in self._unlogged_why.items()),
        )
        self._unlogged.clear()
        self._unlogged_why.clear()

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        response = self._admit(ws, request)
        if response is not None:
            self._refused.add(ws)
        return response

    def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == HEALTH_PATH:
            return self._health(ws)
        if self.ui.serves(path):
            return self.ui.respond(request, lambda: (_local_uid(ws), _from_this_machine(ws)))
        if path not in WS_PATHS:
            return ws.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        addr = _peer_ip(ws)
        # Which local user opened it: every local user is 127.0.0.1 (ws_auth = false, failure counts).
        uid = _local_uid(ws)
        verdict = self.ui.upgrade(request, uid) or self.auth.check(addr, request.path, request.headers, uid)
        if verdict.log is not None:
            log.log(logging.WARNING if verdict.warn else logging.INFO, "%s", verdict.log)
        if verdict.status:
            response = ws.respond(verdict.status, verdict.body)
            for name, value in verdict.headers:
                response.headers[name] = value
            return response
        if len(self.connections) >= self.config.max_connections:
            log.warning("refused %s: %d WebSocket connections already open", addr, len(self.connections))
            return ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        if verdict.accept_headers:
            self._accept_headers[ws] = verdict.accept_headers
        return None

    def _process_response(self, ws: ServerConnection, request: Request, response: Response) -> None:
        """Add the challenge's proof to the 101 answer of a client that logged in with one."""
        for name, value in self._accept_headers.pop(ws, ()):
            if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
                response.headers[name] = value

    def _select_subprotocol(self, ws: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        chosen = select_subprotocol(offered)
        return Subprotocol(chosen) if chosen is not None else None

    def _health(self, ws: ServerConnection) -> Response:
        body = Health(
            status="healthy",
            service="ccxd",
            version=__version__,
            active_sessions=len(self.connections),
            uptime_seconds=round(time.monotonic() - self.started_mono, 3),
        )
        response = ws.respond(http.HTTPStatus.OK, encode(body).decode() + "\n")
        del response.headers["Content-Type"]  # Headers is a multi-dict: replace, not add
        response.headers["Content-Type"] = "application/json"
        response.headers["Cache-Control"] = "no-store"
        return response

    # -- connections ----------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        handler = self.handler
        assert handler is not None
        if isinstance(ws, _GatedConnection) and ws.ticket is not None:
            self.gate.release(ws.ticket)  # logged in: no longer a handshake in progress
        sink = _WsSink(ws)
        host, port = _peer(ws)
        conn = Connection(sink, peer=f"ws {host}:{port}", transport="websocket")
        if len(self.connections) >= self.config.max_connections:
            await ws.close(WsClose.POLICY, "too many connections")
            return
        self.connections.add(sink)
        idle = self.config.ws_idle_timeout
        dispatch = handler.dispatcher.handle
        try:
            hello = handler.open(conn)
            if hello is not None:
                sink.write(hello)
            while True:
                try:
                    async with asyncio.timeout(idle):
                        # Text frames are decoded so that invalid UTF-8 closes with 1007, as
                        # RFC 6455 requires; requests are small, the round trip costs nothing.
                        message = await ws.recv()
                except TimeoutError:
                    if conn.subscriptions:
                        continue  # following a job is not idle
                    await ws.close(WsClose.NORMAL, "idle timeout")
                    return
                raw = message.encode() if isinstance(message, str) else message
                reply = await dispatch(raw, conn)
                if reply is not None:
                    sink.write(reply)
                    # A client that sends but never reads must not grow our buffers.
                    await sink.drain()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("WebSocket connection %s failed", conn.peer)
            with contextlib.suppress(Exception):
                await ws.close(WsClose.INTERNAL, "internal error")
        finally:
            sink._closing = True
            self.connections.discard(sink)
            conn.closed()
            handler.close(conn)


def _peer(ws: ServerConnection) -> tuple[str, int]:
    addr = ws.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return str(addr), 0


def _peer_ip(ws: ServerConnection) -> str:
    return _peer(ws)[0]


def _from_this_machine(ws: ServerConnection) -> bool:
    """True when ``ws`` was opened on this machine (some local user, whether or not known)."""
    ours, peer = ws.local_address, ws.remote_address
    if not (isinstance(ours, tuple) and isinstance(peer, tuple) and len(ours) >= 2 and len(peer) >= 2):
        return False
    return from_this_machine((str(ours[0]), int(ours[1])), (str(peer[0]), int(peer[1])))


def _local_uid(ws: ServerConnection) -> int | None:
    """The uid of the local process that opened ``ws`` (None: remote, or unknown)."""
    ours, peer = ws.local_address, ws.remote_address
    if not (isinstance(ours, tuple) and isinstance(peer, tuple) and len(ours) >= 2 and len(peer) >= 2):
        return None
    return local_peer_uid((str(ours[0]), int(ours[1])), (str(peer[0]), int(peer[1])))
