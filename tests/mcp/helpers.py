"""An MCP session with ``ccxctl mcp`` through the ``mcp`` SDK's own stdio client."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent

from tests.conftest import DaemonProcess

__all__ = ["call", "ccxctl_mcp", "mcp_session", "text_of"]


def ccxctl_mcp(
    daemon: DaemonProcess, cwd: Path | None = None, url: str | None = None
) -> StdioServerParameters:
    """How an MCP client starts ``ccxctl mcp`` for ``daemon`` (this tree's ccxctl).

    With ``url``, over the daemon's WebSocket with its token (``ccxctl --url URL mcp``).
    """
    args, env = ["-m", "ccxctl", "mcp"], {"CCXD_SOCKET": str(daemon.socket)}
    if url is not None:
        args[2:2] = ["--url", url]
        env = {"CCXD_SOCKET": "/nonexistent/ccxd.sock", "CCXD_TOKEN_FILE": str(daemon.token_path)}
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(cwd) if cwd else None)


@contextlib.asynccontextmanager
async def mcp_session(
    daemon: DaemonProcess, cwd: Path | None = None, url: str | None = None
) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with a ``ccxctl mcp`` started for ``daemon``."""
    async with stdio_client(ccxctl_mcp(daemon, cwd, url)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    """The text a model reads of a tool result."""
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def call(mcp: ClientSession, tool: str, /, **arguments: Any) -> dict[str, Any]:
    """Call ``tool`` and return the JSON object its text holds (failing on a tool error)."""
    result = await mcp.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    data = json.loads(text_of(result))
    assert isinstance(data, dict)
    return data
