"""What happened to a Claude run, in one class name, without I/O.

:class:`RunFacts` collects what the events said; :func:`classify` decides.
Structured fields are read together and first — ``is_error``, ``subtype``,
``terminal_reason``, ``api_error_status``, the assistant's ``api_error``, a
rejected ``rate_limit_event`` and the ``system/api_retry`` events — because
the CLI reports API failures as ``subtype: "success"`` with ``is_error: true``
and exit code 0 or 1, so neither the exit code nor ``subtype`` decides alone.
The text forms (``Claude AI usage limit reached|<epoch>``, "resets 3pm (UTC)",
"exceeded the N output token maximum" ...) are the fallback for older CLIs.

Classes (``None`` means the run succeeded):

==================== ==========================================================
``token_limit``      the answer hit the output token maximum (``limit`` = N)
``rate_limit``       429 from the API after the CLI's own retries (``retry_after``)
``overloaded``       529 (or ``overloaded_error``) after the CLI's own retries
``usage_limit``      a plan/subscription limit; ``reset_at`` says when it lifts
``context_full``     the prompt no longer fits (``terminal_reason: prompt_too_long``)
``max_turns``        ``--max-turns`` reached (``subtype: error_max_turns``)
``max_budget``       ``--max-budget-usd`` reached (``subtype: error_max_budget_usd``)
``auth``             invalid API key, expired or missing login (401/403)
``network``          the API could not be reached (refused, DNS, TLS, reset)
``api_error``        any other API error (5xx, 400 ...) with ``status``
``execution_error``  ``subtype: error_during_execution``
``stall``            no event for ``claude_stall_timeout`` seconds; ccxd ended it
``hung_after_result`` the result came (``ok`` says whether it succeeded) but the
                     process did not exit within ``claude_exit_grace``; ccxd ended it
``no_result``        the process ended without a ``result`` event
``unknown_error``    ``is_error`` with nothing more specific to go on
==================== ==========================================================
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Final

from msgspec import Struct

from ccxd.protocol.claude_events import ApiRetry, Assistant, ClaudeEvent, Init, RateLimit, Result, TextLine

__all__ = ["CLASSES", "Classification", "RunFacts", "classify", "parse_reset_clock"]

CLASSES: Final = (
    "token_limit",
    "rate_limit",
    "overloaded",
    "usage_limit",
    "context_full",
    "max_turns",
    "max_budget",
    "auth",
    "network",
    "api_error",
    "execution_error",
    "stall",
    "hung_after_result",
    "no_result",
    "unknown_error",
)

_USAGE_PIPE = re.compile(r"Claude AI usage limit reached\|(\d{9,11})")
_USAGE_WORDS = re.compile(
    r"(?:usage limit|hit your [^·\n]*?limit|limit reached)[^\n]*?"
    r"reset(?:s)?(?: at)?\s+(?P<clock>\d{1,2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?)"
    r"(?:\s*\((?P<tz>[^)]+)\))?",
    re.IGNORECASE,
)
_TOKEN_MAX = re.compile(r"exceeded the (\d+) output token maximum", re.IGNORECASE)
_CONTEXT = re.compile(r"prompt is too long|context (?:window|length) exceeded|prompt_too_long", re.IGNORECASE)
_AUTH = re.compile(
    r"invalid api key|authentication[_ ]failed|please run /login|oauth token (?:has )?(?:expired|revoked)"
    r"|not logged in|invalid bearer token|x-api-key",
    re.IGNORECASE,
)
_NETWORK = re.compile(
    r"ECONNREFUSED|ECONNRESET|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|unable to connect|connection (?:refused|error)"
    r"|fetch failed|socket hang up|network error",
    re.IGNORECASE,
)
_OVERLOADED = re.compile(r"\b529\b|overloaded", re.IGNORECASE)
_RATE = re.compile(r"\b429\b|rate.?limit", re.IGNORECASE)

_NETWORK_API_ERRORS = frozenset({"connection_failed", "stream_idle_timeout", "network_edge_blocked"})
_AUTH_API_ERRORS = frozenset({"authentication_failed", "oauth_org_not_allowed", "invalid_credential_header"})
_AUTH_STATUS = frozenset({401, 403})


class Classification(Struct, kw_only=True, omit_defaults=True):
    """The verdict on one run."""

    error_class: str | None = None
    message: str | None = None
    status: int | None = None
    """The API's HTTP status when one is known."""
    reset_at: float | None = None
    """``usage_limit``: when the limit lifts (epoch seconds)."""
    retry_after: float | None = None
    """``rate_limit``/``overloaded``: the last delay the CLI itself chose, in seconds."""
    limit: int | None = None
    """``token_limit``: the output token maximum that was hit."""
    limit_type: str | None = None
    """``usage_limit``: which window (``five_hour``, ``seven_day`` ...)."""


class RunFacts:
    """What the events of one run said, kept small (no message bodies)."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.model: str | None = None
        self.init: Init | None = None
        self.result: Result | None = None
        self.api_error: Assistant | None = None
        self.rejected: RateLimit | None = None
        self.retries: list[ApiRetry] = []
        self.text_tail: list[str] = []
        self.events = 0
        self.turns = 0
        self.tool_uses = 0

    def observe(self, event: ClaudeEvent) -> None:
        """Take one event into account."""
        self.events += 1
        if isinstance(event, Init):
            self.init = event
            self.session_id = event.session_id or self.session_id
            self.model = event.model
        elif isinstance(event, Result):
            self.result = event
            self.session_id = event.session_id or self.session_id
        elif isinstance(event, Assistant):
            if event.is_api_error_message:
                self.api_error = event
            else:
                self.turns += 1
                self.tool_uses += len(event.tool_uses)
        elif isinstance(event, ApiRetry):
            self.retries.append(event)
            del self.retries[:-20]
        elif isinstance(event, RateLimit):
            if event.rate_limit_info.status == "rejected":
                self.rejected = event
        elif isinstance(event, TextLine):
            self.text_tail.append(event.text[-2000:])
            del self.text_tail[:-10]


def classify(
    facts: RunFacts,
    *,
    stalled: bool = False,
    ended_after_result: bool = False,
    stderr_tail: str = "",
    now: float | None = None,
) -> Classification:
    """Decide the class of a finished run.

    ``stalled``: ccxd ended it for silence; ``ended_after_result``: ccxd ended
    it after its ``result``; ``stderr_tail``: the end of its stderr, read for
    the text fallbacks; ``now`` (epoch seconds) resolves a worded reset clock.
    """
    res = facts.result
    if res is None:
        found = _from_texts(facts, stderr_tail, now)
        if stalled:
            return Classification(error_class="stall", message="no event from the CLI in time; ended")
        return found or Classification(error_class="no_result", message="the CLI ended without a result")
    if not res.is_error and (res.subtype in (None, "success")):
        # Older CLIs reported the usage limit as a "successful" result text.
        if res.result is not None and _USAGE_PIPE.fullmatch(res.result.strip()):
            return _usage_limit(facts, res.result, now) or Classification(error_class="usage_limit")
        if ended_after_result:
            return Classification(
                error_class="hung_after_result", message="the CLI did not exit after its result; ended"
            )
        return Classification()
    cls = _from_structure(facts, res, now)
    if cls is None:
        cls = _from_texts(facts, stderr_tail, now) or Classification(error_class="unknown_error")
    if cls.message is None:
        cls.message = res.result or (res.errors[0] if res.errors else None) or res.subtype
    if cls.status is None and res.api_error_status is not None:
        cls.status = res.api_error_status
    return cls


def _from_structure(facts: RunFacts, res: Result, now: float | None) -> Classification | None:
    err = facts.api_error
    api_error = res.api_error or (err.api_error if err is not None else None)
    status = res.api_error_status or (err.api_error_status if err is not None else None)
    text = res.result or ""
    if res.subtype == "error_max_turns":
        return Classification(error_class="max_turns")
    if res.subtype == "error_max_budget_usd":
        return Classification(error_class="max_budget")
    if res.terminal_reason == "prompt_too_long" or api_error == "message_over_context_limit":
        return Classification(error_class="context_full", status=status)
    if api_error == "max_output_tokens" or _TOKEN_MAX.search(text):
        m = _TOKEN_MAX.search(text)
        return Classification(error_class="token_limit", limit=int(m.group(1)) if m else None)
    usage = _usage_limit(facts, text, now)
    if usage is not None or api_error == "usage_limit_reached":
        return usage or Classification(error_class="usage_limit", status=status)
    if status in _AUTH_STATUS or api_error in _AUTH_API_ERRORS:
        return Classification(error_class="auth", status=status)
    if status == 429:
        return Classification(error_class="rate_limit", status=429, retry_after=_last_delay(facts, 429))
    if status == 529 or (err is not None and err.error == "server_error" and _OVERLOADED.search(text)):
        return Classification(error_class="overloaded", status=529, retry_after=_last_delay(facts, 529))
    if api_error in _NETWORK_API_ERRORS:
        return Classification(error_class="network")
    if res.subtype == "error_during_execution":
        return Classification(error_class="execution_error")
    if status is not None:
        return Classification(error_class="api_error", status=status)
    return None


def _from_texts(facts: RunFacts, stderr_tail: str, now: float | None) -> Classification | None:
    texts = [facts.result.result or ""] if facts.result is not None else []
    if facts.api_error is not None:
        texts.append(facts.api_error.text)
    texts += facts.text_tail
    texts.append(stderr_tail)
    text = "\n".join(t for t in texts if t)
    if not text:
        return None
    m = _TOKEN_MAX.search(text)
    if m:
        return Classification(error_class="token_limit", limit=int(m.group(1)), message=_line_of(text, m))
    usage = _usage_limit(facts, text, now)
    if usage is not None:
        return usage
    for pattern, name in (
        (_CONTEXT, "context_full"),
        (_AUTH, "auth"),
        (_NETWORK, "network"),
        (_OVERLOADED, "overloaded"),
        (_RATE, "rate_limit"),
    ):
        m = pattern.search(text)
        if m:
            return Classification(error_class=name, message=_line_of(text, m))
    return None


def _usage_limit(facts: RunFacts, text: str, now: float | None) -> Classification | None:
    if facts.rejected is not None:
        info = facts.rejected.rate_limit_info
        return Classification(
            error_class="usage_limit",
            reset_at=float(info.resetsAt) if info.resetsAt else None,
            limit_type=info.rateLimitType,
            status=429,
            message=text or None,
        )
    m = _USAGE_PIPE.search(text)
    if m:
        return Classification(
            error_class="usage_limit", reset_at=float(m.group(1)), message="Claude AI usage limit reached"
        )
    w = _USAGE_WORDS.search(text)
    if w:
        reset = parse_reset_clock(w.group("clock"), w.group("tz"), now)
        return Classification(error_class="usage_limit", reset_at=reset, message=_line_of(text, w))
    return None


_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2}))?\s*([ap])?\.?m?\.?", re.IGNORECASE)


def parse_reset_clock(clock: str, tz: str | None, now: float | None) -> float | None:
    """The next moment after ``now`` that a clock reads ``clock`` (``3pm``, ``7:50pm``, ``15:00``) in ``tz``.

    ``None`` when ``now`` is not given or the clock cannot be read.  An
    unknown time zone name is read as UTC.
    """
    if now is None:
        return None
    m = _CLOCK.fullmatch(clock.strip())
    if m is None:
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    half = (m.group(3) or "").lower()
    if half:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "p" else 0)
    if hour > 23 or minute > 59:
        return None
    zone: dt.tzinfo = dt.UTC
    if tz:
        try:
            zone = zoneinfo.ZoneInfo(tz.strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = dt.UTC
    current = dt.datetime.fromtimestamp(now, zone)
    target = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= current:
        target = target + dt.timedelta(days=1)
        # Re-anchor the wall clock after a DST change between now and tomorrow.
        target = target.replace(tzinfo=None).replace(tzinfo=zone)
    return target.timestamp()


def _last_delay(facts: RunFacts, status: int) -> float | None:
    for retry in reversed(facts.retries):
        if retry.error_status == status and retry.retry_delay_ms is not None:
            return retry.retry_delay_ms / 1000
    return None


def _line_of(text: str, m: re.Match[str]) -> str:
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    return text[start : end if end >= 0 else len(text)].strip()[:500]
