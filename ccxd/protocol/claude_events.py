"""The events of Claude Code's ``--output-format stream-json`` output, as msgspec Structs.

These describe the CLI's format (a foreign protocol), not ccxd's: only the
fields ccxd uses are declared and every other field is ignored, so a newer
CLI that adds fields still parses.  Event types ccxd does not know become
:class:`Unknown` with the whole object kept.

Observed with the CLI 2.1.x (see ``tests/claude/fake_api.py`` for how):

* ``system/init`` first, with ``session_id``, ``model``, ``cwd``, ``tools``;
* ``system/api_retry`` for each of the CLI's own API retries (429, 529, 5xx,
  401 once): ``attempt``, ``max_retries``, ``retry_delay_ms``, ``error_status``,
  ``error`` (``rate_limit``, ``overloaded``, ``authentication_failed`` ...);
* ``rate_limit_event`` with ``rate_limit_info`` (``status`` ``allowed`` /
  ``allowed_warning`` / ``rejected``, ``resetsAt`` epoch seconds, ``rateLimitType``);
* ``assistant`` / ``user`` messages; an API failure arrives as an ``assistant``
  message with ``is_api_error_message``, ``error`` and ``api_error``;
* ``stream_event`` (only with ``--include-partial-messages``);
* ``result`` last: ``subtype`` (``success``, ``error_max_turns``,
  ``error_max_budget_usd``, ``error_during_execution`` ...), ``is_error``,
  ``result``, ``terminal_reason``, ``api_error_status``, ``total_cost_usd``,
  ``usage``, ``num_turns``, ``duration_ms``, ``session_id``.  API errors come as
  ``subtype: success`` with ``is_error: true``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

__all__ = [
    "ApiRetry",
    "Assistant",
    "ClaudeEvent",
    "ContentBlock",
    "Init",
    "Message",
    "Oversize",
    "RateLimit",
    "RateLimitInfo",
    "Result",
    "StreamEvent",
    "System",
    "TextLine",
    "Unknown",
    "Usage",
    "User",
]


class _Event(Struct, kw_only=True, tag_field="kind"):
    """Base of every event; encoded with ``kind`` naming the event (the struct's tag)."""


class Usage(Struct, kw_only=True):
    """Token counts of a message or of the whole run."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class ContentBlock(Struct, kw_only=True):
    """One block of a message: ``text``, ``tool_use``, ``tool_result``, ``thinking`` ...

    A tool result's content is not kept (it can be megabytes); its
    ``tool_use_id`` and ``is_error`` are.
    """

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    is_error: bool | None = None


class Message(Struct, kw_only=True):
    """The ``message`` of an assistant or user event."""

    id: str | None = None
    model: str | None = None
    role: str | None = None
    content: list[ContentBlock] | str = []
    stop_reason: str | None = None
    usage: Usage | None = None


class Init(_Event, tag="init"):
    """``system/init``: the session has started."""

    session_id: str | None = None
    model: str | None = None
    cwd: str | None = None
    tools: list[str] = []
    permissionMode: str | None = None
    apiKeySource: str | None = None
    claude_code_version: str | None = None


class ApiRetry(_Event, tag="api_retry"):
    """``system/api_retry``: the CLI retries an API call itself."""

    session_id: str | None = None
    attempt: int = 0
    max_retries: int | None = None
    retry_delay_ms: float | None = None
    error_status: int | None = None
    error: str | None = None


class System(_Event, tag="system"):
    """Any other ``system`` event (``compact_boundary``, hooks ...), kept whole."""

    subtype: str | None = None
    session_id: str | None = None
    raw: dict[str, Any] = {}


class RateLimitInfo(Struct, kw_only=True):
    """What the API said about the account's limits."""

    status: str | None = None
    resetsAt: int | None = None
    rateLimitType: str | None = None
    isUsingOverage: bool | None = None


class RateLimit(_Event, tag="rate_limit"):
    """``rate_limit_event``."""

    session_id: str | None = None
    rate_limit_info: RateLimitInfo = msgspec.field(default_factory=RateLimitInfo)


class Assistant(_Event, tag="assistant"):
    """An assistant message: text, tool use, or an API error the CLI reports."""

    session_id: str | None = None
    message: Message = msgspec.field(default_factory=Message)
    parent_tool_use_id: str | None = None
    error: str | None = None
    is_api_error_message: bool = False
    api_error: str | None = None
    api_error_status: int | None = None
    api_error_params: Any = None

    @property
    def text(self) -> str:
        """The message's text blocks joined."""
        content = self.message.content
        if isinstance(content, str):
            return content
        return "".join(b.text or "" for b in content if b.type == "text")

    @property
    def tool_uses(self) -> list[ContentBlock]:
        """The message's ``tool_use`` blocks."""
        content = self.message.content
        return [] if isinstance(content, str) else [b for b in content if b.type == "tool_use"]


class User(_Event, tag="user"):
    """A user message (tool results, or the CLI's own synthetic prompts)."""

    session_id: str | None = None
    message: Message = msgspec.field(default_factory=Message)
    parent_tool_use_id: str | None = None
    isSynthetic: bool = False


class StreamEvent(_Event, tag="stream_event"):
    """A raw API streaming event (``--include-partial-messages``), kept whole."""

    session_id: str | None = None
    event: Any = None
    parent_tool_use_id: str | None = None


class Result(_Event, tag="result"):
    """``result``: the run is over (the process should exit now)."""

    subtype: str | None = None
    is_error: bool = False
    result: str | None = None
    session_id: str | None = None
    total_cost_usd: float | None = None
    usage: Usage | None = None
    num_turns: int | None = None
    duration_ms: float | None = None
    duration_api_ms: float | None = None
    terminal_reason: str | None = None
    api_error_status: int | None = None
    api_error: str | None = None
    stop_reason: str | None = None
    errors: list[str] | None = None


class Unknown(_Event, tag="unknown"):
    """A JSON event of a type ccxd does not know, kept whole."""

    type: str | None = None
    raw: Any = None


class Oversize(_Event, tag="oversize"):
    """A line longer than the parser's limit, dropped (it stays in the job's output)."""

    bytes: int


class TextLine(_Event, tag="text"):
    """A line that is not JSON (plain output, or a message the CLI printed)."""

    text: str


ClaudeEvent = (
    Init
    | ApiRetry
    | System
    | RateLimit
    | Assistant
    | User
    | StreamEvent
    | Result
    | Unknown
    | TextLine
    | Oversize
)
"""Every event the parser yields; the struct's ``tag`` names its kind (encoded as ``kind``)."""
