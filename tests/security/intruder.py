"""Another local user knocks on the victim's ccxd: run by the tests as a second uid.

Run with the system Python (standard library only).  Each mode prints one JSON
object per attempt on stdout:

* ``ws HOST PORT MARKER [TOKEN]``: open ``/ws`` (with TOKEN as a bearer token,
  when given) and, in the same breath, send ``job.start`` for a job that
  creates MARKER; report the HTTP status and what came back.
* ``cookie HOST PORT MARKER COOKIE``: as ``ws``, with a dashboard session cookie
  and the dashboard's own ``Origin`` instead of a token.
* ``login HOST PORT MARKER PATH [SOURCE]``: redeem the one-time login PATH
  (``/ui/login?t=…``, as another user reads it off the browser's command line),
  then as ``cookie`` with the session cookie it got; one object for the login,
  one for the upgrade.  With SOURCE, both connect from that local address (to
  look like a remote peer).
* ``guess HOST PORT N``: N opening handshakes, each with another wrong token.
* ``http HOST PORT [TOKEN]``: ``GET /metrics``; the status and the body.
* ``unix PATH``: ``GET /metrics`` over a Unix socket; the status, or the error.
"""

import base64
import json
import os
import socket
import sys


def frame(text: str) -> bytes:
    """A masked text frame, as a client sends it."""
    data = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    if len(data) < 126:
        head += bytes([0x80 | len(data)])
    else:
        head += bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def upgrade(
    host: str, port: int, token: str | None, then: bytes = b"", extra: str = "", source: str = ""
) -> dict:
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}"
    )
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    with socket.create_connection(
        (host, port), timeout=10, source_address=(source, 0) if source else None
    ) as sock:
        sock.sendall(head.encode() + b"\r\n" + then)
        got = b""
        try:
            while b"\r\n\r\n" not in got:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
            status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else 0
            if status == 101 and then:
                sock.settimeout(3)
                try:  # whatever the server answers the request with
                    while len(got) < 65536:
                        data = sock.recv(65536)
                        if not data:
                            break
                        got += data
                except TimeoutError:
                    pass
        except OSError as exc:
            return {"status": 0, "error": str(exc), "got": got.decode("latin-1")}
    return {"status": status, "got": got.decode("latin-1")}


def http_get(sock: socket.socket, token: str | None) -> dict:
    head = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    sock.sendall(head.encode() + b"\r\n")
    got = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        got += data
    status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else 0
    return {"status": status, "body": got.partition(b"\r\n\r\n")[2].decode("latin-1")}


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "ws":
        host, port, marker = args[0], int(args[1]), args[2]
        token = args[3] if len(args) > 3 else None
        request = {"jsonrpc": "2.0", "id": 1, "method": "job.start", "params": {"command": f"touch {marker}"}}
        print(json.dumps(upgrade(host, port, token, frame(json.dumps(request)))), flush=True)
    elif mode == "cookie":  # a stolen dashboard cookie, with the dashboard's own Origin
        host, port, marker, cookie = args[0], int(args[1]), args[2], args[3]
        request = {"jsonrpc": "2.0", "id": 1, "method": "job.start", "params": {"command": f"touch {marker}"}}
        extra = f"Origin: http://{host}:{port}\r\nCookie: ccxd_session={cookie}\r\n"
        print(json.dumps(upgrade(host, port, None, frame(json.dumps(request)), extra)), flush=True)
    elif mode == "login":  # a login URL read off the victim's browser command line
        host, port, marker, path = args[0], int(args[1]), args[2], args[3]
        source = args[4] if len(args) > 4 else ""
        with socket.create_connection(
            (host, port), timeout=10, source_address=(source, 0) if source else None
        ) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            got = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
        head = got.partition(b"\r\n\r\n")[0].decode("latin-1")
        status = int(head.split(" ", 2)[1]) if head.startswith("HTTP/1.1 ") else 0
        cookie = ""
        for line in head.split("\r\n"):
            if line.lower().startswith("set-cookie: ccxd_session="):
                cookie = line.split("=", 1)[1].split(";", 1)[0]
        print(json.dumps({"status": status, "cookie": bool(cookie)}), flush=True)
        request = {"jsonrpc": "2.0", "id": 1, "method": "job.start", "params": {"command": f"touch {marker}"}}
        extra = f"Origin: http://{host}:{port}\r\nCookie: ccxd_session={cookie or 'none'}\r\n"
        print(json.dumps(upgrade(host, port, None, frame(json.dumps(request)), extra, source)), flush=True)
    elif mode == "guess":
        host, port, n = args[0], int(args[1]), int(args[2])
        for i in range(n):
            print(json.dumps(upgrade(host, port, f"guess-{i}-0123456789abcdef")), flush=True)
    elif mode == "http":
        token = args[2] if len(args) > 2 else None
        with socket.create_connection((args[0], int(args[1])), timeout=10) as sock:
            print(json.dumps(http_get(sock, token)), flush=True)
    elif mode == "mcp":  # MCP over HTTP: an initialize that would open a session
        host, port = args[0], int(args[1])
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "intruder", "version": "1"},
                },
            }
        ).encode()
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(head.encode() + body)
            got = b""
            try:
                while len(got) < 65536:
                    data = sock.recv(65536)
                    if not data:
                        break
                    got += data
            except TimeoutError:
                pass
        status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else 0
        hdrs = got.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
        print(json.dumps({"status": status, "session": "mcp-session-id:" in hdrs}), flush=True)
    elif mode == "unix":
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(args[0])
                print(json.dumps(http_get(sock, None)), flush=True)
        except OSError as exc:
            print(json.dumps({"status": 0, "error": type(exc).__name__}), flush=True)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
