"""Is the daemon at the other end really the user's own?  Checked before a byte is sent.

Another local user can create ``/tmp/ccxd-UID`` first, or listen on the
WebSocket port before ccxd does, and serve a fake daemon there: it would
receive the commands, their environment and the token, and could answer with
forged output.  So, before sending anything, the client checks:

* a Unix socket's directory and every directory above it: owned by the user
  or root; the socket's own directory writable by nobody else, the ones above
  it only when sticky (like ``/tmp``);
* the process serving a Unix socket (``SO_PEERCRED``), and on Linux the owner
  of the loopback TCP socket it is connected to (``/proc/net/tcp{,6}``): the
  user or root.

Root is trusted because it can read everything of every user anyway.  A refusal
is :class:`Untrusted`, whose message is one line for the user.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import struct
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "Untrusted",
    "check_socket_dir",
    "check_tcp_peer",
    "check_unix_peer",
    "proc_net_address",
    "tcp_socket_uids",
]

_PROC_NET = ("/proc/net/tcp", "/proc/net/tcp6")


class Untrusted(Exception):
    """What serves the daemon's address is not the user's own ccxd; nothing was sent."""


def _trusted(uid: int) -> bool:
    return uid in (os.getuid(), 0)


def _who(uid: int) -> str:
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _impostor(where: str, why: str) -> Untrusted:
    me = _who(os.getuid())
    return Untrusted(f"refusing {where}: {why}, not by you ({me}): another user may be posing as ccxd")


def check_socket_dir(path: Path) -> Path:
    """``path`` with its directory resolved, after checking nobody else controls that directory.

    A missing directory passes (connecting then says the daemon is not running).
    Raises :class:`Untrusted`.
    """
    directory = Path(os.path.realpath(path.parent))
    try:
        st = os.lstat(directory)
    except OSError:
        return path
    where = str(path)
    if not stat.S_ISDIR(st.st_mode):
        raise Untrusted(f"refusing {where}: {directory} is not a directory")
    if not _trusted(st.st_uid):
        raise Untrusted(
            f"{_impostor(where, f'its directory {directory} is owned by {_who(st.st_uid)}')} "
            f"(remove {directory}, or set XDG_RUNTIME_DIR)"
        )
    if st.st_mode & 0o022:
        raise Untrusted(
            f"refusing {where}: other users can write to its directory {directory} "
            f"(mode {stat.S_IMODE(st.st_mode):04o}) and could put a fake ccxd there; "
            "use a private directory for socket_path (chmod 700)"
        )
    for parent in directory.parents:
        try:
            pst = os.lstat(parent)
        except OSError:
            break
        if not _trusted(pst.st_uid) or (pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX):
            raise Untrusted(
                f"refusing {where}: {parent} (mode {stat.S_IMODE(pst.st_mode):04o}, "
                f"owned by {_who(pst.st_uid)}) lets other users replace {directory}; "
                "use a socket_path whose directories only you and root can change"
            )
    return directory / path.name


def check_unix_peer(sock: socket.socket, where: str) -> None:
    """Refuse a Unix socket whose server runs as another user (``SO_PEERCRED``; Linux)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    if not _trusted(uid):
        raise _impostor(where, f"it is served by {_who(uid)} (pid {pid})")


def proc_net_address(host: str, port: int) -> list[str]:
    """How ``/proc/net/tcp{,6}`` spells ``host:port`` (an IPv4 address also as IPv4-mapped IPv6) (no I/O)."""
    addr = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    spelled = []
    if isinstance(addr, ipaddress.IPv4Address):
        spelled.append(f"{struct.unpack('=I', addr.packed)[0]:08X}:{port:04X}")
        addr = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)
    words = struct.unpack("=4I", addr.packed)
    spelled.append("".join(f"{w:08X}" for w in words) + f":{port:04X}")
    return spelled


_LISTEN = "0A"
_ANY_REMOTE = ("00000000:0000", "00000000000000000000000000000000:0000")


def tcp_socket_uids(
    table: Iterable[str], local: list[str], remote: list[str], listening: bool = False
) -> list[int]:
    """The uids of the sockets in a ``/proc/net/tcp`` table with these local and remote addresses (no I/O).

    With ``listening``, those of listening sockets on ``local`` instead (``remote`` is ignored).
    """
    uids = []
    for line in table:
        fields = line.split()
        if len(fields) <= 7 or fields[1] not in local:
            continue
        if (fields[3] == _LISTEN and fields[2] in _ANY_REMOTE) if listening else fields[2] in remote:
            try:
                uids.append(int(fields[7]))
            except ValueError:
                continue
    return uids


def _is_loopback(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def check_tcp_peer(sockname: tuple[str, int], peername: tuple[str, int], where: str) -> bool:
    """On loopback, refuse a TCP connection whose server side belongs to another user.

    The connection's own server-side socket is looked up (it exists from the
    moment the kernel completed the handshake, accepted or not, and carries
    the uid of whoever made the listening socket), so there is no race with
    whoever listens; only while the kernel has not made it yet (SYN cookies)
    are the listening sockets on the port asked instead.  True when the server
    is the user's (or root's); False when this cannot be known here (not
    loopback, or no ``/proc/net``: not Linux).
    """
    if not _is_loopback(peername[0]):
        return False
    server = proc_net_address(peername[0], peername[1])
    client = proc_net_address(sockname[0], sockname[1])
    tables: list[list[str]] = []
    for name in _PROC_NET:
        try:
            with open(name, encoding="ascii", errors="replace") as f:
                tables.append(f.readlines())
        except OSError:
            continue
    if not tables:
        return False
    uids = [uid for table in tables for uid in tcp_socket_uids(table, server, client)]
    if not uids:
        port = peername[1]
        anywhere = proc_net_address("0.0.0.0", port) + proc_net_address("::", port)  # noqa: S104 - a name, no bind
        listeners = [*server, *anywhere]
        uids = [uid for table in tables for uid in tcp_socket_uids(table, listeners, [], listening=True)]
    if not uids:
        raise Untrusted(f"refusing {where}: cannot tell which user serves it")
    foreign = [u for u in uids if not _trusted(u)]
    if foreign:
        raise _impostor(where, f"port {peername[1]} is served by {_who(foreign[0])}")
    return True
