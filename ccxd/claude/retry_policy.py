"""What to do after a Claude job failed: the retry policy as a pure function (no I/O).

:func:`decide` takes the policy (:class:`RetrySettings`), what went wrong
(:class:`Failure`), the clock and a random source, and answers with a
:class:`Decision`: give up, or run the next attempt — when, and with what
changed.  The runner (``retry_runner.py``) only carries decisions out.

The rules, by failure class:

* ``token_limit`` — rerun at once with a larger
  ``CLAUDE_CODE_MAX_OUTPUT_TOKENS`` (× ``token_growth``, never above the
  model's maximum, see :mod:`ccxd.claude.models`); once at the maximum (or with
  ``token_limit = "concise"``), rerun with the next of cc_executor's escalating
  concision instructions added to the prompt.  Never by resuming: each attempt
  is a fresh run of the original request, and a job that itself resumes or
  continues a session is not retried (its session holds the failed turn).
* ``context_full``, ``max_turns``, ``max_budget``, ``auth`` and anything
  unknown — not retried: another run would fail the same way.
* ``rate_limit``, ``overloaded``, ``api_error`` (5xx), ``network`` — exponential
  backoff with jitter.  The CLI already retried inside (``system/api_retry``
  events), so the wait starts beyond the CLI's last delay and honours
  ``retry-after``.
* ``usage_limit`` — wait until the reset time (plus a margin), and every other
  Claude job of the daemon waits with it (``block_until``); a reset further
  away than ``usage_limit_max_wait`` is given up on.
* ``stall`` — the process was killed for silence; rerun at once.

Every retry counts towards ``max_attempts`` (the first run is attempt 1).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Final, Literal

from msgspec import Struct, structs

from ccxd.claude.models import output_limits

__all__ = [
    "BACKOFF_CLASSES",
    "CONCISION_LEVELS",
    "Decision",
    "Failure",
    "RetrySettings",
    "add_concision",
    "decide",
]

TOKEN_LIMIT: Final = "token_limit"  # noqa: S105 - a class name, not a secret
CONTEXT_FULL: Final = "context_full"
RATE_LIMIT: Final = "rate_limit"
OVERLOADED: Final = "overloaded"
API_ERROR: Final = "api_error"
NETWORK: Final = "network"
USAGE_LIMIT: Final = "usage_limit"
STALLED: Final = "stall"

BACKOFF_CLASSES: Final = frozenset({RATE_LIMIT, OVERLOADED, API_ERROR, NETWORK})
"""Transient API trouble: wait (exponential backoff with jitter), then run again."""

TokenStrategy = Literal["raise", "concise", "both", "off"]

CONCISION_LEVELS: Final = 3
"""How many concision instructions there are (cc_executor's three steps)."""


class RetrySettings(Struct, frozen=True, kw_only=True):
    """The retry policy of one Claude job (config defaults, per-job overrides)."""

    enabled: bool = True
    max_attempts: int = 4
    backoff_base: float = 30.0
    backoff_max: float = 900.0
    jitter: float = 0.5
    token_limit: TokenStrategy = "both"  # noqa: S105 - not a secret
    token_growth: float = 2.0
    usage_limit_max_wait: float = 6 * 3600.0
    usage_limit_margin: float = 5.0
    model_max_output_tokens: Mapping[str, int] = {}

    def merged(self, overrides: Mapping[str, object]) -> RetrySettings:
        """These settings with the non-None ``overrides`` applied."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return structs.replace(self, **changes) if changes else self


class Failure(Struct, frozen=True, kw_only=True):
    """What the failed attempt tells the policy."""

    error_class: str
    status: int | None = None
    """The API's HTTP status, when known (``api_error`` is retried only for 5xx)."""
    attempt: int = 1
    """The failed attempt's number (1 = the first run)."""
    model: str | None = None
    """The model the CLI reported (``init``), else the one asked for."""
    max_output_tokens: int | None = None
    """``CLAUDE_CODE_MAX_OUTPUT_TOKENS`` the attempt ran with (unset: the CLI's default)."""
    token_limit: int | None = None
    """N from "exceeded the N output token maximum"."""
    concision_level: int = 0
    """Concision instructions already added (0: the prompt as given)."""
    can_edit_prompt: bool = True
    """False when the prompt is not ours to change (e.g. inside a shell command)."""
    resumes_session: bool = False
    """The job runs ``--resume``/``--continue``: never rerun it after a token or context limit."""
    resets_at: float | None = None
    """Usage limit: when it resets (epoch seconds)."""
    retry_after: float | None = None
    """Seconds the API asked to wait (``retry-after``)."""
    cli_retries: int = 0
    """``system/api_retry`` events the CLI emitted (its own retries)."""
    cli_last_delay: float | None = None
    """Seconds of the CLI's last own retry delay."""


class Decision(Struct, frozen=True, kw_only=True):
    """The policy's answer: run attempt ``attempt`` after ``delay``, or give up."""

    retry: bool
    reason: str
    """One line for people: why, and what changes."""
    attempt: int = 0
    """The next attempt's number (when retrying)."""
    delay: float = 0.0
    """Seconds from now until the next attempt may start."""
    wait_reason: str | None = None
    """What the next attempt waits for (shown by ``ccxctl ps``), when it waits."""
    max_output_tokens: int | None = None
    """Run the next attempt with this ``CLAUDE_CODE_MAX_OUTPUT_TOKENS`` (None: unchanged)."""
    concision_level: int = 0
    """Concision instructions the next attempt's prompt carries."""
    block_until: float | None = None
    """Hold every Claude job of the daemon until then (a usage limit is per account)."""


def _give_up(reason: str) -> Decision:
    return Decision(retry=False, reason=reason)


def decide(settings: RetrySettings, failure: Failure, *, now: float, rng: random.Random) -> Decision:
    """The next step after ``failure`` under ``settings`` (pure: same inputs, same answer)."""
    cls = failure.error_class
    if not settings.enabled:
        return _give_up(f"{cls}: retries are off for this job")
    if failure.attempt >= settings.max_attempts:
        return _give_up(f"{cls}: gave up after {failure.attempt} attempt(s) (max_attempts)")
    nxt = failure.attempt + 1
    if cls == TOKEN_LIMIT:
        return _token_limit(settings, failure, nxt)
    if cls == CONTEXT_FULL:
        return _give_up(f"{cls}: not retried (the same request would fill the context again)")
    if cls == API_ERROR and failure.status is not None and failure.status < 500:
        return _give_up(f"{cls}: HTTP {failure.status} is not retried (the request itself was refused)")
    if cls in BACKOFF_CLASSES:
        delay = backoff_delay(settings, failure, rng)
        return Decision(
            retry=True,
            attempt=nxt,
            delay=delay,
            wait_reason=cls.replace("_", " "),
            reason=f"{cls}: attempt {nxt} of {settings.max_attempts} in {delay:.0f}s",
        )
    if cls == USAGE_LIMIT:
        return _usage_limit(settings, failure, nxt, now)
    if cls == STALLED:
        return Decision(
            retry=True, attempt=nxt, reason=f"{cls}: killed for silence; attempt {nxt} starts now"
        )
    return _give_up(f"{cls}: not retried")


def _token_limit(s: RetrySettings, f: Failure, nxt: int) -> Decision:
    strategy = s.token_limit
    if strategy == "off":
        return _give_up(f"{TOKEN_LIMIT}: token-limit retries are off")
    if f.resumes_session:
        # Rerunning a resumed session would carry the overlong turn along: the resume loop.
        return _give_up(
            f"{TOKEN_LIMIT}: not retried, the job resumes a session that now holds the failed turn"
        )
    limits = output_limits(f.model, s.model_max_output_tokens)
    current = f.max_output_tokens or f.token_limit or limits.default
    if strategy in ("raise", "both") and current < limits.maximum:
        wanted = max(current + 1, math.ceil(current * s.token_growth))
        tokens = min(limits.maximum, wanted)
        return Decision(
            retry=True,
            attempt=nxt,
            max_output_tokens=tokens,
            concision_level=f.concision_level,
            reason=f"{TOKEN_LIMIT}: attempt {nxt} with CLAUDE_CODE_MAX_OUTPUT_TOKENS={tokens}"
            f" (was {current})",
        )
    if strategy in ("concise", "both") and f.can_edit_prompt and f.concision_level < CONCISION_LEVELS:
        level = f.concision_level + 1
        return Decision(
            retry=True,
            attempt=nxt,
            max_output_tokens=f.max_output_tokens,
            concision_level=level,
            reason=f"{TOKEN_LIMIT}: attempt {nxt} asks for a more concise answer"
            f" (level {level} of {CONCISION_LEVELS})",
        )
    why = (
        f"already at the model's maximum ({limits.maximum})"
        if current >= limits.maximum
        else "raising the limit is off"
    )
    if strategy in ("concise", "both"):
        why += (
            "; the prompt cannot be changed"
            if not f.can_edit_prompt
            else "; every concision instruction was tried"
        )
    return _give_up(f"{TOKEN_LIMIT}: not retried, {why}")


def backoff_delay(s: RetrySettings, f: Failure, rng: random.Random) -> float:
    """Seconds to wait before the next attempt after transient API trouble.

    ``backoff_base × 2^(attempt-1)``, at least twice the CLI's last own delay
    (it already retried), capped at ``backoff_max``; the jitter takes up to
    ``jitter`` of it away, so many jobs do not come back at the same instant.
    ``retry-after`` is a floor the jitter never goes below.
    """
    exp = s.backoff_base * (2.0 ** min(f.attempt - 1, 60))
    if f.cli_last_delay is not None:
        exp = max(exp, 2.0 * f.cli_last_delay)
    delay = min(s.backoff_max, exp)
    delay -= delay * s.jitter * rng.random()
    if f.retry_after is not None:
        delay = max(delay, min(f.retry_after, s.backoff_max))
    return round(max(0.0, delay), 3)


def _usage_limit(s: RetrySettings, f: Failure, nxt: int, now: float) -> Decision:
    if f.resets_at is None:
        until = now + s.backoff_max
        known = f"reset time unknown; waiting {s.backoff_max:.0f}s"
    else:
        if f.resets_at - now > s.usage_limit_max_wait:
            return _give_up(
                f"{USAGE_LIMIT}: resets in {f.resets_at - now:.0f}s, beyond usage_limit_max_wait"
                f" ({s.usage_limit_max_wait:.0f}s)"
            )
        until = max(now, f.resets_at) + s.usage_limit_margin
        known = "waiting for the reset"
    return Decision(
        retry=True,
        attempt=nxt,
        delay=round(until - now, 3),
        wait_reason="usage limit",
        block_until=until,
        reason=f"{USAGE_LIMIT}: {known}; attempt {nxt} then",
    )


# cc_executor's adaptive runner escalated in three steps: ask for concision,
# then give a word budget, then ask for an outline only.  Same steps, our words.
def add_concision(prompt: str, level: int, token_limit: int | None = None) -> str:
    """``prompt`` with concision instruction ``level`` (1–3) added; 0 returns it unchanged."""
    if level <= 0:
        return prompt
    if level == 1:
        note = "Be concise: keep the answer to the essential information only."
    elif level == 2:
        words = max(200, (token_limit or 32000) // 5)
        note = f"Keep the whole answer under about {words} words."
    else:
        note = "Answer with a brief outline or summary only, not the full content."
    return f"{prompt.rstrip()}\n\n{note}"
