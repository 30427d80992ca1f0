"""Adapters that let clients of older tools talk to ccxd (cc_executor's WebSocket API)."""
