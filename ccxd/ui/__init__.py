"""The web dashboard: static pages served on the WebSocket port, one-time logins, session cookies.

The page talks the daemon's own JSON-RPC over the same WebSocket as every
other client; this package only serves its files (:mod:`ccxd.ui.routes`),
turns a one-time login URL into a session cookie (:mod:`ccxd.ui.login`) and
decides whether a browser's upgrade may use that cookie (:mod:`ccxd.ui.guard`).
"""
