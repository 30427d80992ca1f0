"""The dashboard's static files as HTTP answers: content types, ETags, caching, security headers.

Files are read once, when first asked for, and kept (a few hundred KiB).  A
vendored library lives under a directory named with its version, so its
files never change under their URL and are cached ``immutable`` for a year;
the dashboard's own files are revalidated on each load (``no-cache``, a
matching ``If-None-Match`` gets ``304``).
"""

from __future__ import annotations

import email.utils
import hashlib
import http
from pathlib import Path, PurePosixPath

from websockets.datastructures import Headers
from websockets.http11 import Response

__all__ = ["STATIC_DIR", "StaticFiles", "security_headers", "simple_response"]

STATIC_DIR = Path(__file__).with_name("static")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
_IMMUTABLE = "public, max-age=31536000, immutable"


def security_headers(host: str | None) -> list[tuple[str, str]]:
    """Headers every dashboard answer carries: a strict CSP (no inline script, no framing) and friends.

    ``host`` is the request's checked ``Host``: the page's WebSocket goes there and nowhere else
    (None for an answer to a refused ``Host``: nowhere).
    """
    sockets = f" ws://{host} wss://{host}" if host is not None else ""
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src 'self'{sockets}; manifest-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return [
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
    ]


def simple_response(
    status: http.HTTPStatus, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    """An HTTP answer that closes the connection (websockets serves one request per connection)."""
    h = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
        ]
    )
    for name, value in headers or ():
        h[name] = value
    return Response(status.value, status.phrase, h, body)


class _File:
    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class StaticFiles:
    """Serves the files under ``root`` by their path relative to it."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root.resolve()
        self._cache: dict[str, _File | None] = {}

    def get(self, rel: str, if_none_match: str | None, extra: list[tuple[str, str]]) -> Response:
        """The answer for ``rel`` (``app.js``, ``vendor/uplot-1.6.32/uPlot.esm.js``): 200, 304 or 404."""
        file = self._load(rel)
        if file is None:
            return simple_response(http.HTTPStatus.NOT_FOUND, b"not found\n", _TYPES[".txt"], extra)
        cache = _IMMUTABLE if rel.startswith("vendor/") else "no-cache"
        headers = [*extra, ("ETag", file.etag), ("Cache-Control", cache)]
        if if_none_match is not None and file.etag in {t.strip() for t in if_none_match.split(",")}:
            response = simple_response(http.HTTPStatus.NOT_MODIFIED, b"", file.content_type, headers)
            del response.headers["Content-Length"]
            return response
        return simple_response(http.HTTPStatus.OK, file.body, file.content_type, headers)

    def _load(self, rel: str) -> _File | None:
        if rel in self._cache:
            return self._cache[rel]
        file = None
        pure = PurePosixPath(rel)
        parts = pure.parts
        # Only plain names below root: no "..", no hidden files, no absolute paths.
        plain = all(p not in ("..", ".") and not p.startswith(".") and "\\" not in p for p in parts)
        if parts and plain and not pure.is_absolute():
            path = self.root.joinpath(*parts)
            suffix = path.suffix.lower()
            if suffix in _TYPES and path.is_file() and path.resolve().is_relative_to(self.root):
                file = _File(path.read_bytes(), _TYPES[suffix])
        if len(self._cache) < 256:
            self._cache[rel] = file
        return file
