"""The WebSocket port's HTTP front: ``/mcp`` served here, every other request to ``websockets``.

``websockets`` takes no request body, and MCP's streamable HTTP transport is
``POST`` with a JSON body (plus ``GET`` for an SSE stream and ``DELETE``).  So
each connection the port accepts starts with this protocol: it passes the same
accept gate as a WebSocket (:mod:`ccxd.transports.admission`), reads the
request line, and then either hands the connection, with the bytes read, to the
``websockets`` connection it wraps (``/ws``, ``/health``, ``/ui`` … unchanged)
or serves HTTP/1.1 itself for ``/mcp``.

An ``/mcp`` request is authenticated like a WebSocket handshake
(:meth:`~ccxd.access.auth.Authenticator.check`: bearer token, Origin,
failure limits, ``ws_auth = false`` for the daemon's own user, and then only
with a ``Host`` that names the daemon: DNS rebinding); one that is refused gets
its status (401, 403, 421, 429) and the connection is closed, having reached
nothing else.  Heads are parsed strictly (no ``Transfer-Encoding``, plain-digit
``Content-Length``, no control characters): a proxy in front must not read
another request than the one answered here.  An authenticated request goes to an ASGI application
(``ccxd.mcp.http``, when the ``mcp`` extra is installed; else 501 says so).
Bodies are bounded by ``max_message_bytes``, open HTTP connections count
against ``max_connections`` with the WebSocket ones, and an idle keep-alive
connection closes after ``ws_idle_timeout``.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, Protocol, cast

from ccxd.access.auth import Authenticator
from ccxd.transports.admission import AdmissionGate, Refusal, Ticket
from ccxd.trust import local_peer_uid
from ccxd.ui.front import UiFront
from ccxd.ui.guard import host_allowed

__all__ = ["MCP_PATH", "NO_MCP", "App", "HttpFront"]

log = logging.getLogger("ccxd.transports.http")

MCP_PATH = "/mcp"
_MAX_LINE = 8192  # longest request line we wait for (websockets' own limit)
_MAX_HEAD = 64 * 1024  # request line and headers of an /mcp request
_MAX_BUFFERED = 64 * 1024  # bytes of a next request kept while one is answered
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a method or header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # in a header value or target: never valid
_DIGITS = re.compile(r"[0-9]{1,18}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

NO_MCP = "MCP over HTTP needs the mcp extra in the daemon's environment: pip install 'ccxd[mcp]'\n"


class Port(Protocol):
    """What the front needs of the WebSocket server it fronts."""

    config: Any
    auth: Authenticator
    gate: AdmissionGate
    connections: Any  # the open WebSocket connections (a sized collection)
    ui: UiFront  # its host names, which a request without a token must name

    def _refused_on_accept(self, peer: str, why: Refusal) -> None: ...


class _Headers:
    """Request headers as ``Authenticator`` reads them (case-insensitive ``get_all``)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items

    def get_all(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self.items if k.lower() == key]


class App(Protocol):
    """The ``/mcp`` application: ASGI, and stopped with the daemon."""

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        """Answer one request."""

    async def stop(self) -> None:
        """End its sessions."""


class HttpFront:
    """Routes the port's connections: ``/mcp`` to the app ``load`` gives, the rest to ``websockets``.

    ``load`` runs at the first authenticated ``/mcp`` request (the SDK takes a
    second to import, which the daemon's start need not wait for); None means
    the ``mcp`` extra is absent.
    """

    def __init__(self, port: Port, load: Callable[[], Coroutine[Any, Any, App | None]]) -> None:
        self.port = port
        self._load = load
        self._app: asyncio.Task[App | None] | None = None
        self.connections: set[_FrontProtocol] = set()
        self.http_open = 0  # authenticated /mcp connections
        self.stopping = False

    def wrap(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        """The ``create_connection`` for ``websockets.serve``: a front before each ``inner`` connection."""

        def create(*args: Any, **kwargs: Any) -> _FrontProtocol:
            return _FrontProtocol(self, inner(*args, **kwargs))

        return create

    async def app(self) -> App | None:
        """The ``/mcp`` app, loaded once."""
        if self._app is None:
            self._app = asyncio.get_running_loop().create_task(self._load())
        return await asyncio.shield(self._app)

    async def stop(self) -> None:
        """Refuse new connections, close the /mcp ones and stop the app (its sessions end)."""
        self.stopping = True
        for conn in list(self.connections):
            conn.abort()
        if self._app is not None and self._app.done() and not self._app.cancelled():
            app = None if self._app.exception() else self._app.result()
            if app is not None:
                await app.stop()


class _FrontProtocol(asyncio.Protocol):
    """One accepted connection: until its request line, then WebSocket or /mcp."""

    def __init__(self, front: HttpFront, inner: Any) -> None:
        self.front = front
        self.inner = inner  # the websockets ServerConnection, fed only if the request is not /mcp
        self.transport: asyncio.Transport | None = None
        self.ticket: Ticket | None = None
        self.buf = bytearray()
        self.mcp = False
        self.counted = False
        self.peer = ("?", 0)
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.request: _Request | None = None  # authenticated, its body still coming
        self.lost = asyncio.get_running_loop().create_future()
        self.writable: asyncio.Future[None] | None = None
        self.paused = False

    def __getattr__(self, name: str) -> Any:
        # websockets' factory hands the object it made to its subprotocol selector.
        return getattr(self.inner, name)

    # -- accept and route -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        port = self.front.port
        verdict = port.gate.admit(self.peer[0], _open_fds)
        if not isinstance(verdict, Ticket):
            transport.abort()
            port._refused_on_accept(self.peer[0], verdict)
            return
        if self.front.stopping:
            port.gate.release(verdict)
            transport.abort()
            return
        self.ticket = verdict
        self.front.connections.add(self)
        self._arm(port.config.ws_handshake_timeout)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.mcp:
            # Bytes of a next request while one is answered: kept, up to a bound.
            if self.task is not None and len(self.buf) > _MAX_BUFFERED and not self.paused:
                self.paused = True
                assert self.transport is not None
                self.transport.pause_reading()
            self._next()
            return
        end = self.buf.find(b"\r\n")
        if end < 0 and len(self.buf) < _MAX_LINE:
            return
        parts = bytes(self.buf[: max(end, 0)]).split(b" ")
        path = parts[1].partition(b"?")[0] if len(parts) == 3 else b""
        if path == MCP_PATH.encode():
            self.mcp = True
            self._next()
        else:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the connection to websockets, as if it had been its own from the start."""
        transport = self.transport
        assert transport is not None
        self._disarm()
        self.front.connections.discard(self)
        if self.ticket is not None:
            # The inner connection asks the gate again, as it is accepted: our place is its.
            self.front.port.gate.release(self.ticket)
            self.ticket = None
        data, self.buf = bytes(self.buf), bytearray()
        transport.set_protocol(self.inner)
        self.inner.connection_made(transport)
        if data and not transport.is_closing():
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self.mcp:
            self.abort()
        return None  # close our side too: HTTP/1.1 clients do not half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.front.connections.discard(self)
        if self.ticket is not None:
            self.front.port.gate.release(self.ticket)
            self.ticket = None
        if self.counted:
            self.front.http_open -= 1
            self.counted = False
        if not self.lost.done():
            self.lost.set_result(None)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _arm(self, seconds: float | None) -> None:
        self._disarm()
        if seconds is not None:
            self.timer = asyncio.get_running_loop().call_later(seconds, self.abort)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- /mcp: HTTP/1.1 -------------------------------------------------------

    def _next(self) -> None:
        """Read the next request in the buffer and answer it (one at a time).

        The head is authenticated as soon as it is complete: a refused peer never
        gets to make the daemon hold its body.
        """
        if self.task is not None or self.transport is None or self.transport.is_closing():
            return
        if self.paused:  # nothing is answered now: read on
            self.paused = False
            self.transport.resume_reading()
        if self.request is None:
            end = self.buf.find(b"\r\n\r\n")
            if end > _MAX_HEAD or (end < 0 and len(self.buf) > _MAX_HEAD):
                self._refuse(431, "request head too large\n")
                return
            if end < 0:
                return
            request = self._parse_head(bytes(self.buf[:end]).decode("latin-1"))
            if request is None or not self._admit(request.method, request.target, _Headers(request.headers)):
                return
            del self.buf[: end + 4]
            self.request = request
        request = self.request
        if len(self.buf) < request.size:
            return
        request.body = bytes(self.buf[: request.size])
        del self.buf[: request.size]
        self.request = None
        self._disarm()
        self.task = asyncio.get_running_loop().create_task(self._answer(request))

    def _parse_head(self, head: str) -> _Request | None:
        """The request line and headers, or None after answering what is wrong with them."""
        line, *fields = head.split("\r\n")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._refuse(400, "bad request line\n")
            return None
        method, target, version = parts
        if not _TOKEN.fullmatch(method) or _CONTROL.search(target):
            self._refuse(400, "bad request line\n")
            return None
        headers: list[tuple[str, str]] = []
        for field in fields:
            name, sep, value = field.partition(":")
            # A bare LF or a NUL is a line break to some parsers: a proxy in front would read other headers.
            if not sep or not _TOKEN.fullmatch(name) or _CONTROL.search(value):
                self._refuse(400, "bad header line\n")
                return None
            headers.append((name, value.strip(" \t")))
        view = _Headers(headers)
        if view.get_all("Transfer-Encoding"):
            self._refuse(411, "send the body with a Content-Length\n")
            return None
        lengths = view.get_all("Content-Length")
        # Digits only: int() also takes "+5" and "5_0", which a proxy in front may read otherwise.
        if len(lengths) > 1 or (lengths and not _DIGITS.fullmatch(lengths[0])):
            self._refuse(400, "bad Content-Length\n")
            return None
        size = int(lengths[0]) if lengths else 0
        if size > self.front.port.config.max_message_bytes:
            self._refuse(413, "request body too large (max_message_bytes)\n")
            return None
        keep = version == "HTTP/1.1" and not any(
            v.strip().lower() == "close" for c in view.get_all("Connection") for v in c.split(",")
        )
        return _Request(method, target, headers, size, keep)

    def _admit(self, method: str, target: str, headers: _Headers) -> bool:
        """Authenticate one request like a WebSocket handshake; answer and close if refused."""
        port, (host, _) = self.front.port, self.peer
        if target.partition("?")[0] != MCP_PATH:
            self._refuse(404, "not found\n")
            return False
        verdict = port.auth.check(host, target, headers, uid=self._uid())
        if verdict.log is not None:
            log.log(logging.WARNING if verdict.warn else logging.INFO, "/mcp: %s", verdict.log)
        if verdict.status:
            self._refuse(verdict.status, verdict.body, verdict.headers)
            return False
        hosts = headers.get_all("Host")
        if verdict.via == "none" and not (len(hosts) == 1 and host_allowed(hosts[0], port.ui.hosts)):
            # Let in without a token (ws_auth = false): a page whose name was rebound to us must not be.
            log.warning("refused %s at /mcp: Host %r is not this daemon's name", host, ", ".join(hosts)[:100])
            self._refuse(421, "unknown host\n")
            return False
        if not self.counted:
            if len(port.connections) + self.front.http_open >= port.config.max_connections:
                log.warning("refused %s: too many connections for /mcp", host)
                self._refuse(503, "too many connections\n")
                return False
            self.counted = True
            self.front.http_open += 1
            if self.ticket is not None:  # logged in: no longer a handshake in progress
                port.gate.release(self.ticket)
                self.ticket = None
        return True

    def _uid(self) -> int | None:
        assert self.transport is not None
        ours = self.transport.get_extra_info("sockname")
        if not (isinstance(ours, tuple) and len(ours) >= 2):
            return None
        return local_peer_uid((str(ours[0]), int(ours[1])), self.peer)

    def _refuse(self, status: int, body: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer with ``status`` and close: nothing of the request reached the app."""
        data = body.encode()
        fields = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
        self._write_head(status, [*fields, *headers, ("Connection", "close")])
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(data)
            self.transport.close()

    def _write_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {status} {reason}", "Server: ccxd", f"Date: {_http_date()}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if self.transport is not None and not self.transport.is_closing():  # uvloop raises on a closed one
            self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def _answer(self, request: _Request) -> None:
        exchange = _Exchange(self, request)
        try:
            app = await self.front.app()
            if app is None:
                await exchange.send_text(501, NO_MCP)
            else:
                await app(exchange.scope(), exchange.receive, exchange.send)
            if not exchange.started:
                await exchange.send_text(500, "no answer\n")
            elif not exchange.done:
                exchange.finish()
        except Exception:
            log.exception("/mcp request from %s failed", self.peer[0])
            if not exchange.started:
                await exchange.send_text(500, "internal error\n")
            exchange.close = True
        finally:
            self.task = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if exchange.close or not request.keep:
            transport.close()
            return
        self._arm(self.front.port.config.ws_idle_timeout)
        self._next()


class _Request:
    """One /mcp request: its head, then its body once read."""

    __slots__ = ("body", "headers", "keep", "method", "size", "target")

    def __init__(
        self, method: str, target: str, headers: list[tuple[str, str]], size: int, keep: bool
    ) -> None:
        self.method, self.target, self.headers, self.size, self.keep = method, target, headers, size, keep
        self.body = b""


class _Exchange:
    """One request's ASGI side: its scope, ``receive`` and ``send``."""

    def __init__(self, conn: _FrontProtocol, request: _Request) -> None:
        self.conn = conn
        self.request = request
        self.started = False
        self.done = False
        self.chunked = False
        self.close = not request.keep
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body_sent = False

    def scope(self) -> Scope:
        conn, req = self.conn, self.request
        assert conn.transport is not None
        ours = conn.transport.get_extra_info("sockname")
        path, _, query = req.target.partition("?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": req.method.upper(),
            "scheme": "https" if conn.transport.get_extra_info("sslcontext") is not None else "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in req.headers],
            "client": conn.peer,
            "server": (str(ours[0]), int(ours[1])) if isinstance(ours, tuple) and len(ours) >= 2 else None,
            "state": {},
        }

    async def receive(self) -> Message:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        await asyncio.shield(self.conn.lost)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.status = int(message["status"])
            self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())]
            return
        if kind != "http.response.body" or self.done:
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        transport = self.conn.transport
        if transport is None or transport.is_closing():
            return  # the client is gone: the app learns it from receive()
        if self.status:
            headers = [
                (k, v) for k, v in self.headers if k.lower() not in ("connection", "transfer-encoding")
            ]
            sized = any(k.lower() == "content-length" for k, _ in headers)
            if not sized and not more:
                headers.append(("Content-Length", str(len(body))))
            elif not sized:
                self.chunked = True
                headers.append(("Transfer-Encoding", "chunked"))
            if self.close:
                headers.append(("Connection", "close"))
            self.conn._write_head(self.status, headers)
            self.status = 0
        if self.chunked:
            if body:
                transport.writelines([f"{len(body):x}\r\n".encode(), body, b"\r\n"])
        elif body:
            transport.write(body)
        if not more:
            self.finish()
            return
        if self.conn.writable is not None:
            await self.conn.writable  # a client that does not read slows only its stream

    async def send_text(self, status: int, text: str) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await self.send({"type": "http.response.body", "body": text.encode()})

    def finish(self) -> None:
        """End the response (the last chunk of a chunked one)."""
        if self.done:
            return
        self.done = True
        transport = self.conn.transport
        if self.status:  # started without a body message: an empty answer
            fields = [
                (k, v) for k, v in self.headers if k.lower() not in ("content-length", "transfer-encoding")
            ]
            self.conn._write_head(self.status, [*fields, ("Content-Length", "0")])
            self.status = 0
        elif self.chunked and transport is not None and not transport.is_closing():
            transport.write(b"0\r\n\r\n")


def _http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


def _open_fds() -> int:
    """Descriptors this process holds (less the one that counts them)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:
        return 1 << 30  # cannot tell: as good as none left
