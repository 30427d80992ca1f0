"""A fake Anthropic Messages API for running the real ``claude`` CLI offline.

Only the outside edge is fake: tests run the real CLI (from npm) under a real
ccxd, pointed here with ``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT``.

What the CLI (2.1.x, ``-p --output-format stream-json``) was seen to do, by
experiment against a logging server:

* ``HEAD /api/hello`` first (a reachability probe; any answer will do, it
  resets the connection right after) and then ``POST /v1/messages?beta=true``
  with ``"stream": true``, headers ``x-api-key`` (``ANTHROPIC_API_KEY``),
  ``anthropic-version: 2023-06-01``, ``X-Claude-Code-Session-Id`` (the
  ``--session-id``) and ``X-Stainless-Retry-Count`` (its own retries).
  Nothing else is needed: with a private ``HOME``/``CLAUDE_CONFIG_DIR`` and any
  API key it runs with no network.  ``DISABLE_TELEMETRY=1``,
  ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` and ``DISABLE_AUTOUPDATER=1``
  keep it from trying anything else.
* It expects a standard SSE stream (``message_start``, ``content_block_*``,
  ``message_delta`` with ``stop_reason`` and ``usage``, ``message_stop``).
* 429 and 529 (and 5xx) replies are retried inside the CLI with backoff (it
  honours ``retry-after``), announced as ``system/api_retry`` events.
* A 401 is retried like a 5xx; then the result is ``Invalid API key · Fix
  external API key`` (``api_error_status: 401``).  Each retry waits with
  backoff (minutes in total after 10): tests set ``CLAUDE_CODE_MAX_RETRIES``.
* ``stop_reason: max_tokens`` makes the CLI continue by itself (a synthetic
  "Output token limit hit. Resume directly" user turn, 3 times); then an
  ``assistant`` message with ``api_error: max_output_tokens`` and the result
  "API Error: Claude's response exceeded the N output token maximum" (N is
  the model's maximum, 128000 for the default model), ``is_error: true``.
* A 400 "prompt is too long" gives ``terminal_reason: prompt_too_long``; a
  refused connection ``api_error: connection_failed`` ("ECONNREFUSED"); a
  stream that stops mid-way (:class:`Hang`) leaves the CLI waiting for
  minutes (its own idle timeout): ccxd's stall detection ends it.
* Usage limits are only read in *gateway* mode (``ANTHROPIC_AUTH_TOKEN`` a
  JWT with ``aud: claude-gateway``, see ``tests/claude/conftest.py``; it is
  not verified): a 429 with ``anthropic-ratelimit-unified-status: rejected``,
  ``-reset`` (epoch) and ``-representative-claim`` (``five_hour``) and
  ``x-should-retry: false`` gives a ``rate_limit_event`` (``status:
  rejected``, ``resetsAt``, ``rateLimitType``), an ``assistant`` message with
  ``api_error: usage_limit_reached`` and the result "You've hit your 5-hour
  limit · resets 7:50pm (UTC)".  With an API key the same 429 is a plain
  rate limit.
* API errors end with ``subtype: "success"``, ``is_error: true`` and exit code
  1 (0 was seen for older versions): neither decides alone.

Each test scripts the replies to ``POST /v1/messages`` in order (:meth:`FakeApi.script`);
when the script is used up, :attr:`FakeApi.default` answers.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ApiError",
    "FakeApi",
    "Hang",
    "Reply",
    "Stream",
    "ToolUse",
    "UsageLimit",
    "invalid_key",
    "overloaded",
    "rate_limited",
]


@dataclass
class Stream:
    """A successful streamed answer: ``text`` in deltas of ``piece`` characters."""

    text: str = "Hello from the fake API."
    piece: int = 64
    stop_reason: str = "end_turn"
    input_tokens: int = 12
    output_tokens: int | None = None  # default: about one token per 4 characters
    delay: float = 0.0  # seconds between deltas


@dataclass
class ApiError:
    """An error reply: ``status`` with an Anthropic error body and extra headers."""

    status: int
    type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class UsageLimit:
    """A subscription usage-limit refusal: 429 with the unified rate-limit headers."""

    resets_at: int  # epoch seconds
    limit_type: str = "five_hour"


@dataclass
class ToolUse:
    """An answer that calls tool ``name`` with ``input`` (the CLI runs it and asks again)."""

    name: str = "Read"
    input: dict[str, Any] = field(default_factory=lambda: {"file_path": "/etc/hostname"})
    text: str = "Let me look."


@dataclass
class Hang:
    """Start streaming ``text``, then send nothing more until the server stops."""

    text: str = "I was about to say"


Reply = Stream | ApiError | UsageLimit | Hang | ToolUse


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def rate_limited(retry_after: int = 1) -> ApiError:
    """A 429 as the API sends it."""
    return ApiError(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        {"retry-after": str(retry_after)},
    )


def overloaded() -> ApiError:
    """A 529 as the API sends it."""
    return ApiError(529, "overloaded_error", "Overloaded")


def invalid_key() -> ApiError:
    """A 401 as the API sends it for a wrong key."""
    return ApiError(401, "authentication_error", "invalid x-api-key")


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _stream_events(model: str, reply: Stream) -> Iterator[bytes]:
    out_tokens = reply.output_tokens if reply.output_tokens is not None else max(1, len(reply.text) // 4)
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
            },
        },
    )
    yield _sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for i in range(0, len(reply.text), reply.piece):
        yield _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": reply.text[i : i + reply.piece]},
            },
        )
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": out_tokens},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


def _tool_use_events(model: str, reply: ToolUse) -> Iterator[bytes]:
    head = list(_stream_events(model, Stream(text=reply.text, stop_reason="tool_use")))
    yield from head[:4]  # message_start, text block start, its delta, its stop
    yield _sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_fake1", "name": reply.name, "input": {}},
        },
    )
    yield _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": json.dumps(reply.input)},
        },
    )
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 1})
    yield from head[4:]  # message_delta (stop_reason tool_use), message_stop


class FakeApi:
    """The server: start it, script replies, point the CLI at :attr:`base_url`."""

    def __init__(self) -> None:
        self.default: Reply = Stream()
        self.requests: list[Seen] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-api", daemon=True)

    @property
    def base_url(self) -> str:
        """What ``ANTHROPIC_BASE_URL`` must be."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def messages(self) -> list[Seen]:
        """The ``POST /v1/messages`` requests so far."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/v1/messages")]

    def script(self, *replies: Reply) -> None:
        """Answer the next message requests with ``replies``, in order."""
        with self._lock:
            self._script.extend(replies)

    def start(self) -> FakeApi:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (hung streams are released); the port then refuses connections."""
        self._stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test asserts on api.requests instead

            def _record(self) -> dict[str, Any] | None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                with api._lock:
                    api.requests.append(Seen(self.command, self.path, dict(self.headers), body))
                return body

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.send_header("request-id", "req_fake")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def do_HEAD(self) -> None:
                self._record()
                self._send(200, b"")

            def do_GET(self) -> None:
                self._record()
                self._send(404, b'{"type":"error","error":{"type":"not_found_error","message":"no"}}')

            def do_POST(self) -> None:
                body = self._record()
                if not self.path.startswith("/v1/messages") or body is None:
                    self.do_GET()
                    return
                reply = api._next()
                if isinstance(reply, ApiError):
                    err = {"type": "error", "error": {"type": reply.type, "message": reply.message}}
                    self._send(reply.status, json.dumps(err).encode(), reply.headers)
                elif isinstance(reply, UsageLimit):
                    err = {
                        "type": "error",
                        "error": {"type": "rate_limit_error", "message": "Usage limit reached"},
                    }
                    self._send(
                        429,
                        json.dumps(err).encode(),
                        {
                            "anthropic-ratelimit-unified-status": "rejected",
                            "anthropic-ratelimit-unified-reset": str(reply.resets_at),
                            "anthropic-ratelimit-unified-representative-claim": reply.limit_type,
                            "x-should-retry": "false",
                        },
                    )
                elif isinstance(reply, ToolUse):
                    self._stream_events(list(_tool_use_events(str(body.get("model", "claude")), reply)))
                elif isinstance(reply, Hang):
                    self._stream(body, Stream(text=reply.text), hang=True)
                else:
                    self._stream(body, reply, hang=False)

            def _stream_events(self, events: list[bytes]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for ev in events:
                        self.wfile.write(f"{len(ev):x}\r\n".encode() + ev + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _stream(self, body: dict[str, Any], reply: Stream, hang: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.send_header("request-id", "req_fake")
                self.end_headers()
                events = list(_stream_events(str(body.get("model", "claude")), reply))
                if hang:
                    events = events[:3]  # message_start, block start, one delta
                try:
                    for ev in events:
                        self.wfile.write(f"{len(ev):x}\r\n".encode() + ev + b"\r\n")
                        self.wfile.flush()
                        if reply.delay:
                            time.sleep(reply.delay)
                    if hang:
                        api._stopping.wait()
                        return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
