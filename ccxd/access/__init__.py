"""Who may talk to ccxd: tokens, the checks on a request and the failure limits (sans-I/O but the token file).

Every front (the WebSocket and HTTP transports, the web UI, the metrics
endpoint) imports it, so it sits below all of them.
"""
