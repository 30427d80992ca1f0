"""Unix sockets private to the daemon's user: binding one 0600, asking who is at the other end."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

__all__ = ["bind_unix_socket", "peer_credentials"]


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind a listening socket at ``path`` with mode 0600 from the first instant."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(1024)
    sock.setblocking(False)
    return sock
