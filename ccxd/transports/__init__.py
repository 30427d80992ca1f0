"""Thin I/O layers that carry protocol messages: the Unix socket (and WebSocket)."""
