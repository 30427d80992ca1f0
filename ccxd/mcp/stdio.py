"""``ccxctl mcp``: serve ccxd's MCP tools over stdin/stdout, a thin bridge to the daemon.

An MCP client (``claude --mcp-config``, ``claude mcp add``) starts it as a
subprocess; each tool call becomes calls over one connection to the local (or
remote) daemon, opened at the first call and reconnected if the daemon restarts.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from ccxd.client import Client, connect
from ccxd.client.urls import BadAddress, parse_address
from ccxd.mcp.tools import JobTools, build_server

__all__ = ["serve_stdio"]


def serve_stdio(target: str | Path | None = None, token_file: str | None = None) -> None:
    """Serve MCP on stdin/stdout until the client closes them.

    ``target`` is what :func:`ccxd.client.connect` takes (None: ``$CCXD_URL`` or the
    default socket).  Jobs run in this process's directory unless a tool call names
    another; a remote daemon picks its own.
    """
    where = str(target) if target else os.environ.get("CCXD_URL") or ""
    try:
        remote = bool(where) and parse_address(where).kind == "ws"
    except BadAddress:
        remote = False  # connect() says what is wrong with it, at the first call

    async def opener() -> Client:
        return await connect(target, token_file=token_file)

    tools = JobTools(opener, default_cwd=None if remote else os.getcwd())
    server = build_server(tools)

    async def main() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await tools.close()

    anyio.run(main)
