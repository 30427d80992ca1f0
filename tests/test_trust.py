"""Who serves the daemon's address: socket directories, /proc/net/tcp and peer credentials."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from ccxd.trust import (
    Untrusted,
    check_socket_dir,
    check_tcp_peer,
    check_unix_peer,
    client_socket_uids,
    local_peer_uid,
    proc_net_address,
    tcp_socket_uids,
)

TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F43 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 48674 1
   1: 0100007F:1F43 0100007F:D431 01 00000000:00000000 00:00000000 00000000   999        0 48675 1
   2: 0100007F:D431 0100007F:1F43 01 00000000:00000000 00:00000000 00000000     0        0 48676 1
"""


def test_proc_net_spells_addresses_as_the_kernel_does():
    assert proc_net_address("127.0.0.1", 8003)[0] == f"{int.from_bytes(bytes([127, 0, 0, 1]), 'little'):08X}:1F43"
    assert len(proc_net_address("127.0.0.1", 1)) == 2  # also as IPv4-mapped IPv6
    assert proc_net_address("::ffff:127.0.0.1", 1) == proc_net_address("127.0.0.1", 1)
    assert len(proc_net_address("::1", 80)) == 1 and proc_net_address("::1", 80)[0].endswith(":0050")


def test_the_server_side_of_a_connection_is_found_by_its_two_addresses():
    server = proc_net_address("127.0.0.1", 8003)
    client = proc_net_address("127.0.0.1", 0xD431)
    assert tcp_socket_uids(TABLE.splitlines(), server, client) == [999]
    assert tcp_socket_uids(TABLE.splitlines(), client, server) == [0]


def test_listening_sockets_are_found_by_their_address_or_the_wildcard():
    server = proc_net_address("127.0.0.1", 8003)
    assert tcp_socket_uids(TABLE.splitlines(), server, [], listening=True) == [999]
    wildcard = proc_net_address("0.0.0.0", 0x07E8)
    table = ["   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001   0 318 1"]
    assert tcp_socket_uids(table, wildcard, [], listening=True) == [1001]


def test_a_real_loopback_connection_of_our_own_passes():
    with socket.create_server(("127.0.0.1", 0)) as srv, socket.create_connection(srv.getsockname()) as c:
        assert check_tcp_peer(c.getsockname(), c.getpeername(), "ws://test") is True
    assert check_tcp_peer(("192.0.2.2", 5), ("192.0.2.1", 80), "ws://x") is False  # not loopback


def test_a_server_gone_before_it_was_identified_is_a_lost_connection_not_an_impostor():
    # A daemon killed while a client reconnects: its side of the connection and its
    # listener are gone.  The client must retry, not give up on an "untrusted" server.
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    names = client.getsockname(), client.getpeername()  # as the transport has them from its connect
    server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    server.close()
    listener.close()
    with pytest.raises(ConnectionResetError, match="went away before it could be identified"):
        check_tcp_peer(*names, "ws://127.0.0.1/ws")
    client.close()


def test_a_unix_server_of_our_own_passes(tmp_path: Path):
    with socket.socket(socket.AF_UNIX) as srv, socket.socket(socket.AF_UNIX) as c:
        srv.bind(str(tmp_path / "s"))
        srv.listen()
        c.connect(str(tmp_path / "s"))
        check_unix_peer(c, "test")


@pytest.mark.parametrize("mode", [0o700, 0o755, 0o750])
def test_a_private_socket_directory_passes(tmp_path: Path, mode: int):
    d = tmp_path / "run"
    d.mkdir()
    os.chmod(d, mode)
    assert check_socket_dir(d / "ccxd.sock") == Path(os.path.realpath(d)) / "ccxd.sock"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
def test_a_socket_directory_others_can_write_is_refused(tmp_path: Path, mode: int):
    d = tmp_path / "run"
    d.mkdir()
    os.chmod(d, mode)
    with pytest.raises(Untrusted, match="other users can write to its directory"):
        check_socket_dir(d / "ccxd.sock")


def test_an_ancestor_others_can_write_is_refused_unless_sticky(tmp_path: Path):
    top = tmp_path / "top"
    (top / "run").mkdir(parents=True)
    os.chmod(top / "run", 0o700)
    os.chmod(top, 0o777)
    with pytest.raises(Untrusted, match="lets other users replace"):
        check_socket_dir(top / "run" / "ccxd.sock")
    os.chmod(top, 0o1777)  # like /tmp: others cannot rename what is ours
    check_socket_dir(top / "run" / "ccxd.sock")


def test_a_missing_directory_is_left_to_the_connect(tmp_path: Path):
    assert check_socket_dir(tmp_path / "nope" / "ccxd.sock") == tmp_path / "nope" / "ccxd.sock"


# -- the daemon's side: who opened a connection it accepted -------------------------

PEERS = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F43 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 48674 1
   1: 0100007F:1F43 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 48675 1
   2: 0100007F:D431 0100007F:1F43 01 00000000:00000000 00:00000000 00000000  1001        0 48676 1
   3: 0100007F:D432 0100007F:1F43 06 00000000:00000000 03:00001770 00000000     0        0 0 3
   4: 0100007F:D433 0100007F:1F43 05 00000000:00000000 00:00000000 00000000  1002        0 0 1
   5: 0100007F:D431 0100007F:0050 01 00000000:00000000 00:00000000 00000000  1003        0 48677 1
"""


def test_the_client_side_of_an_accepted_connection_is_found_by_its_two_addresses():
    ours = proc_net_address("127.0.0.1", 8003)
    table = PEERS.splitlines()
    assert client_socket_uids(table, proc_net_address("127.0.0.1", 0xD431), ours) == [1001]
    # Our own server-side socket (local address ours) is never taken for the client.
    assert client_socket_uids(table, ours, proc_net_address("127.0.0.1", 0xD431)) == [0]
    # Another connection from the same client port, to another server port, is not this one.
    elsewhere = proc_net_address("127.0.0.1", 80)
    assert client_socket_uids(table, proc_net_address("127.0.0.1", 0xD431), elsewhere) == [1003]


def test_a_closed_client_socket_is_nobody_not_root():
    """TIME_WAIT and orphans show uid 0 and inode 0: a peer that hung up must not pass for root."""
    ours = proc_net_address("127.0.0.1", 8003)
    table = PEERS.splitlines()
    assert client_socket_uids(table, proc_net_address("127.0.0.1", 0xD432), ours) == []
    assert client_socket_uids(table, proc_net_address("127.0.0.1", 0xD433), ours) == []
    assert client_socket_uids(["garbage", "", "  1: x y"], ours, ours) == []


def test_a_real_loopback_client_of_our_own_is_us():
    with socket.create_server(("127.0.0.1", 0)) as srv, socket.create_connection(srv.getsockname()):
        accepted, _ = srv.accept()
        with accepted:
            ours, peer = accepted.getsockname(), accepted.getpeername()
            assert local_peer_uid(ours, peer) == os.getuid()
    assert local_peer_uid(ours, peer) is None  # closed: nobody
    assert local_peer_uid(ours, ("192.0.2.1", 5)) is None  # not this machine
    assert local_peer_uid(("127.0.0.1", 1), ("not an address", 2)) is None
