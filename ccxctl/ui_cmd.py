"""``ccxctl ui``: a one-time login URL of the web dashboard, opened in a browser when there is a display.

The daemon makes the URL (``ui.login_url``); it works once, within a minute,
and the page it opens holds only an ``HttpOnly`` session cookie, never the
token.  Through ``--url ws://HOST:PORT`` the URL names that host and port, so
the same login works from another machine (over ``wss://`` across a network).
"""

from __future__ import annotations

import os
import sys
import webbrowser
from typing import Annotated
from urllib.parse import urlsplit

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import emit_json
from ccxd.protocol import EmptyParams, UiLoginUrl

__all__ = ["login_url_for", "ui"]


def login_url_for(result: UiLoginUrl, url: str | None) -> str:
    """The URL to open: the daemon's own, or on the host and port of a ``ws(s)://`` ``--url``."""
    split = urlsplit(url or "")
    if split.scheme not in ("ws", "wss") or not split.hostname:
        return result.url
    scheme = "https" if split.scheme == "wss" else "http"
    return f"{scheme}://{split.netloc.rpartition('@')[2]}{result.path}"


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def ui(
    ctx: typer.Context,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the URL, even where a browser could open it.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Print a one-time login URL of the web dashboard (and open it where a browser is available)."""
    result: UiLoginUrl = cli.with_client(ctx, lambda c: c.call("ui.login_url", EmptyParams()))
    url = login_url_for(result, cli.target(ctx).url)
    if json_out:
        emit_json(UiLoginUrl(url=url, path=result.path, expires_in=result.expires_in))
        return
    print(url)
    if sys.stderr.isatty():
        sys.stderr.write(f"ccxctl: the link works once, within {result.expires_in:g} s\n")
    if not no_browser and _has_display():
        webbrowser.open(url)
