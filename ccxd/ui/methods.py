"""The handler of ``ui.login_url``: a one-time login URL of the web dashboard."""

from __future__ import annotations

from urllib.parse import urlsplit

from ccxd.errors import RpcError
from ccxd.protocol import EmptyParams, ErrorCode, UiLoginUrl
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.ui.front import LOGIN_PATH, UiFront

__all__ = ["page_base", "register_ui_methods"]


def page_base(ws_url: str) -> str:
    """``http(s)://HOST:PORT`` of the dashboard for a WebSocket URL (a wildcard address becomes 127.0.0.1)."""
    split = urlsplit(ws_url)
    host = split.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # noqa: S104 - a listening address, not one we bind
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if split.scheme == "wss" else "http"
    return f"{scheme}://{host}:{split.port}"


def register_ui_methods(dispatcher: Dispatcher, front: UiFront | None, ws_url: str | None) -> None:
    """Register ``ui.login_url`` (it refuses when the WebSocket port, which serves the page, is off)."""

    async def login_url(p: EmptyParams, conn: Connection) -> UiLoginUrl:
        if front is None or ws_url is None:
            raise RpcError(
                ErrorCode.INVALID_REQUEST,
                "the dashboard is served on the WebSocket port, which is off (ws_enabled = false)",
            )
        path = f"{LOGIN_PATH}?t={front.logins.issue()}"
        return UiLoginUrl(url=page_base(ws_url) + path, path=path, expires_in=front.logins.login_ttl)

    dispatcher.register("ui.login_url", login_url)
