"""A fake ccxd that another user runs where the victim's client looks for the real one.

Run by the tests as a second uid with the system Python (standard library
only).  It listens on a Unix socket (``unix PATH``, creating the socket's
directory, as a squatter of ``/tmp/ccxd-UID`` would) or on TCP (``tcp HOST``,
any free port), prints ``READY <where>`` and records every byte it receives in
RECORD (and one line per accepted connection in RECORD.conns).  To a WebSocket
upgrade it answers 101 as a server without authentication would, to lure a
client into sending its commands.  It stops when its stdin closes.
"""

import base64
import hashlib
import os
import socket
import sys
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def serve(conn: socket.socket, record: str, lock: threading.Lock) -> None:
    head = b""
    answered = False
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            with lock, open(record, "ab") as f:
                f.write(data)
            head += data
            if not answered and b"\r\n\r\n" in head:
                answered = True
                key = ""
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "sec-websocket-key":
                        key = value.strip()
                accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
                conn.sendall(
                    (
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                    ).encode()
                )


def main() -> None:
    mode, where, record = sys.argv[1:4]
    open(record, "wb").close()
    open(record + ".conns", "wb").close()
    if mode == "unix":
        os.makedirs(os.path.dirname(where), mode=0o755, exist_ok=True)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(where)
        os.chmod(where, 0o777)
        shown = where
    else:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind((where, 0))
        shown = str(srv.getsockname()[1])
    srv.listen(16)
    lock = threading.Lock()
    threads = []

    def accept_loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with lock, open(record + ".conns", "a") as f:
                f.write("connection\n")
            t = threading.Thread(target=serve, args=(conn, record, lock), daemon=True)
            t.start()
            threads.append(t)

    threading.Thread(target=accept_loop, daemon=True).start()
    print(f"READY {shown}", flush=True)
    sys.stdin.read()  # the test closes our stdin when it is done
    for t in threads:
        t.join(10)  # each ends when its client hung up (the clients have exited by now)
    srv.close()


if __name__ == "__main__":
    main()
