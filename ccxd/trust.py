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

The daemon asks the mirror question of a connection it accepted
(:func:`local_peer_uid`): which user on this machine opened it, so that
``ws_auth = false`` serves only its own user and failed logins are counted
per user, not per ``127.0.0.1``.
"""

from __future__ import annotations

# Only what ``ccxctl run``'s fast path needs is imported here: it checks its socket
# with this module and starts in about the time Python itself takes.  ipaddress,
# socket and pathlib are imported where they are used.
import errno
import os
import stat
import struct

TYPE_CHECKING = False  # typing's own, without importing typing
if TYPE_CHECKING:
    import _socket
    import ipaddress
    from collections.abc import Iterable
    from pathlib import Path

__all__ = [
    "Untrusted",
    "check_socket_dir",
    "check_socket_path",
    "check_tcp_peer",
    "check_unix_peer",
    "client_socket_uids",
    "from_this_machine",
    "local_peer_uid",
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
    from pathlib import Path

    return Path(check_socket_path(str(path)))


def check_socket_path(path: str) -> str:
    """:func:`check_socket_dir` for a path given as a string (no pathlib: ``ccxctl run`` starts faster)."""
    directory = os.path.realpath(os.path.dirname(path))
    try:
        st = os.lstat(directory)
    except OSError:
        return path
    where = path
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
    parent = directory
    while (up := os.path.dirname(parent)) != parent:
        parent = up
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
    return os.path.join(directory, os.path.basename(path))


def check_unix_peer(sock: _socket.socket, where: str) -> None:
    """Refuse a Unix socket whose server runs as another user (``SO_PEERCRED``; Linux)."""
    import _socket  # the constants without socket.py, whose enums cost a few milliseconds to make

    opt = getattr(_socket, "SO_PEERCRED", None)
    if opt is None:
        return
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(_socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    if not _trusted(uid):
        raise _impostor(where, f"it is served by {_who(uid)} (pid {pid})")


def proc_net_address(host: str, port: int) -> list[str]:
    """How ``/proc/net/tcp{,6}`` spells ``host:port`` (an IPv4 address also as IPv4-mapped IPv6) (no I/O)."""
    import ipaddress

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
    import ipaddress

    try:
        addr = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def client_socket_uids(table: Iterable[str], client: list[str], server: list[str]) -> list[int]:
    """The uids of open sockets in a ``/proc/net/tcp`` table connected from ``client`` to ``server`` (no I/O).

    The server-side mirror of :func:`tcp_socket_uids`: for a connection we
    accepted, ``client`` is the peer's address and ``server`` our own.  Only
    sockets a process still holds count (inode not 0): a closed connection's
    leftover (TIME_WAIT, an orphan) shows uid 0, which would pass a peer off as root.
    """
    uids = []
    for line in table:
        fields = line.split()
        if len(fields) <= 9 or fields[1] not in client or fields[2] not in server or fields[9] == "0":
            continue
        try:
            uids.append(int(fields[7]))
        except ValueError:
            continue
    return uids


def _read_tables() -> list[list[str]]:
    tables: list[list[str]] = []
    for name in _PROC_NET:
        try:
            with open(name, encoding="ascii", errors="replace") as f:
                tables.append(f.readlines())
        except OSError:
            continue
    return tables


def local_peer_uid(sockname: tuple[str, int], peername: tuple[str, int]) -> int | None:
    """The uid of the process on this machine that opened an accepted TCP connection; None when unknown.

    Asked only for peers that are this machine (a loopback address, or the
    very address they connected to); found in ``/proc/net/tcp{,6}`` (Linux)
    as the socket whose local address is the peer's and remote address ours.
    None for other peers, without ``/proc/net``, or when the client already
    closed its socket; callers treat that as "some user", never as theirs.
    """
    try:
        if not from_this_machine(sockname, peername):
            return None
        client = proc_net_address(peername[0], peername[1])
        server = proc_net_address(sockname[0], sockname[1])
    except ValueError:
        return None
    uids = {uid for table in _read_tables() for uid in client_socket_uids(table, client, server)}
    return uids.pop() if len(uids) == 1 else None


def from_this_machine(sockname: tuple[str, int], peername: tuple[str, int]) -> bool:
    """True when an accepted connection comes from this machine: loopback, or any address of its own.

    A local process may connect to 127.0.0.1 from the machine's outward address;
    whether an address is ours is asked of the kernel (can a socket be bound to it).
    """
    peer = peername[0]
    return _is_loopback(peer) or _same_address(peer, sockname[0]) or _is_own_address(peer)


def _is_own_address(host: str) -> bool:
    import ipaddress
    import socket

    try:
        addr = _plain(host)
    except ValueError:
        return False
    family = socket.AF_INET if isinstance(addr, ipaddress.IPv4Address) else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((str(addr), 0))
    except OSError as exc:
        # Only "not an address of this machine" says remote; anything else (a link-local
        # address without its scope, no descriptor left) counts as local, the safe side.
        return exc.errno != errno.EADDRNOTAVAIL
    return True


def _same_address(a: str, b: str) -> bool:
    try:
        return _plain(a) == _plain(b)
    except ValueError:
        return False


def _plain(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    import ipaddress

    addr = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def check_tcp_peer(sockname: tuple[str, int], peername: tuple[str, int], where: str) -> bool:
    """On loopback, refuse a TCP connection whose server side belongs to another user.

    The connection's own server-side socket is looked up (it exists from the
    moment the kernel completed the handshake, accepted or not, and carries
    the uid of whoever made the listening socket), so there is no race with
    whoever listens; only while the kernel has not made it yet (SYN cookies)
    are the listening sockets on the port asked instead.  True when the server
    is the user's (or root's); False when this cannot be known here (not
    loopback, or no ``/proc/net``: not Linux).  ConnectionResetError when the
    server side is gone from the kernel's tables (nothing listens any more).
    """
    if not _is_loopback(peername[0]):
        return False
    server = proc_net_address(peername[0], peername[1])
    client = proc_net_address(sockname[0], sockname[1])
    tables = _read_tables()
    if not tables:
        return False
    uids = [uid for table in tables for uid in tcp_socket_uids(table, server, client)]
    if not uids:
        port = peername[1]
        anywhere = proc_net_address("0.0.0.0", port) + proc_net_address("::", port)  # noqa: S104 - a name, no bind
        listeners = [*server, *anywhere]
        uids = [uid for table in tables for uid in tcp_socket_uids(table, listeners, [], listening=True)]
    if not uids:
        # Neither the connection's server side nor a listener is left: the server went away
        # (a daemon killed as we connected).  A lost connection to retry, not an impostor.
        raise ConnectionResetError(f"{where} went away before it could be identified")
    foreign = [u for u in uids if not _trusted(u)]
    if foreign:
        raise _impostor(where, f"port {peername[1]} is served by {_who(foreign[0])}")
    return True
