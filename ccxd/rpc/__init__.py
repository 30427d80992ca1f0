"""JSON-RPC: decoding, dispatch, method handlers and subscriptions."""
