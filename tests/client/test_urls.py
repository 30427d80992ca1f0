"""Daemon addresses as users type them (issue 21): each form accepted, or one line saying what is meant."""

from __future__ import annotations

import pytest

from ccxd.client.urls import BadAddress, DaemonAddress, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ws://127.0.0.1:8003", ("ws", "ws://127.0.0.1:8003/ws")),
        ("ws://buildhost", ("ws", "ws://buildhost/ws")),
        ("ws://buildhost:8003/", ("ws", "ws://buildhost:8003/ws")),
        ("wss://buildhost:8443", ("wss", "wss://buildhost:8443/ws")),
        ("ws://127.0.0.1:8003/ws", ("ws", "ws://127.0.0.1:8003/ws")),
        ("ws://127.0.0.1:8003/ws/mcp", ("ws", "ws://127.0.0.1:8003/ws/mcp")),
        ("ws://[::1]:8003", ("ws", "ws://[::1]:8003/ws")),
        ("WS://Host:8003", ("ws", "ws://Host:8003/ws")),
        ("ws://h:8003/ws?x=1#frag", ("ws", "ws://h:8003/ws?x=1")),
    ],
)
def test_websocket_urls_get_the_default_path(text: str, expected: tuple[str, str]) -> None:
    address = parse_address(text)
    assert address == DaemonAddress("ws", expected[1])
    assert address.where.startswith(expected[0] + "://")


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("/run/user/1000/ccxd/ccxd.sock", "/run/user/1000/ccxd/ccxd.sock"),
        ("unix:/tmp/ccxd.sock", "/tmp/ccxd.sock"),
        ("unix:///tmp/ccxd.sock", "/tmp/ccxd.sock"),
        ("ccxd.sock", "ccxd.sock"),
        ("./dir:with:colons/ccxd.sock", "./dir:with:colons/ccxd.sock"),
    ],
)
def test_socket_paths_stay_socket_paths(text: str, path: str) -> None:
    assert parse_address(text) == DaemonAddress("unix", path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://127.0.0.1:8003/ws", "use ws:// or wss:// (did you mean ws://127.0.0.1:8003/ws?)"),
        ("http://127.0.0.1:8003", "use ws:// or wss:// (did you mean ws://127.0.0.1:8003/ws?)"),
        ("https://buildhost:8443/ws", "use ws:// or wss:// (did you mean wss://buildhost:8443/ws?)"),
        ("127.0.0.1:8003", "is no socket path: did you mean ws://127.0.0.1:8003/ws?"),
        ("buildhost:8003", "did you mean ws://buildhost:8003/ws?"),
        ("tcp://127.0.0.1:8003", "tcp:// is not a daemon address: expected a socket path, unix:PATH, or ws://"),
        ("ws://:8003/ws", "no host"),
        ("ws://h:99999", "out of range"),
        ("ws://h:http", "expected ws://HOST[:PORT][/ws]"),
        ("ws://h:0", "port 0"),
        ("ws://user:pw@h:8003", "a user or password in the URL is not supported"),
        ("unix:", "names no socket"),
        ("", "an empty daemon address"),
    ],
)
def test_anything_else_is_one_line_saying_what_is_meant(text: str, message: str) -> None:
    with pytest.raises(BadAddress) as info:
        parse_address(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
