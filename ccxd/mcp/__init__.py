"""ccxd as an MCP server: tools for agents to run and follow jobs (needs the ``mcp`` extra).

``tools.py`` holds the tools and resources over :class:`ccxd.client.Client`,
``results.py`` what they answer (no I/O), ``stdio.py`` the bridge ``ccxctl mcp`` runs,
``http.py`` the daemon's own ``/mcp`` (streamable HTTP, behind ``ccxd.transports.http_front``).
"""
