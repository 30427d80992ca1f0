"""The classifier: structured fields first, text forms as fallback."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from ccxd.claude.classify import CLASSES, RunFacts, classify, parse_reset_clock
from ccxd.claude.stream import StreamJsonParser

NOW = dt.datetime(2026, 11, 25, 18, 0, tzinfo=dt.UTC).timestamp()


def facts_of(*events: dict[str, Any], text: str = "") -> RunFacts:
    parser = StreamJsonParser()
    data = b"".join(json.dumps(e).encode() + b"\n" for e in events) + text.encode()
    facts = RunFacts()
    for ev in parser.feed(data) + parser.flush():
        facts.observe(ev)
    return facts


def result(**kw: Any) -> dict[str, Any]:
    return {"type": "result", "subtype": "success", "is_error": False, "session_id": "s", **kw}


def api_error_message(text: str, **kw: Any) -> dict[str, Any]:
    return {
        "type": "assistant",
        "is_api_error_message": True,
        "session_id": "s",
        "message": {"role": "assistant", "model": "<synthetic>", "content": [{"type": "text", "text": text}]},
        **kw,
    }


def test_success() -> None:
    assert classify(facts_of(result(result="hi"))).error_class is None


def test_error_flag_with_subtype_success_is_an_error() -> None:
    cls = classify(facts_of(result(is_error=True, result="API Error: 500 boom", api_error_status=500)))
    assert cls.error_class == "api_error" and cls.status == 500


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"subtype": "error_max_turns", "is_error": True}, "max_turns"),
        ({"subtype": "error_max_budget_usd", "is_error": True}, "max_budget"),
        ({"subtype": "error_during_execution", "is_error": True}, "execution_error"),
        ({"is_error": True, "terminal_reason": "prompt_too_long", "api_error_status": 400}, "context_full"),
        ({"is_error": True, "api_error_status": 401, "result": "Invalid API key"}, "auth"),
        ({"is_error": True, "api_error_status": 403, "result": "forbidden"}, "auth"),
        (
            {"is_error": True, "api_error_status": 429, "result": "API Error: Request rejected (429)"},
            "rate_limit",
        ),
        (
            {"is_error": True, "api_error_status": 529, "result": "API Error: Repeated 529 Overloaded"},
            "overloaded",
        ),
        ({"is_error": True, "api_error": "max_output_tokens", "result": "x"}, "token_limit"),
        ({"is_error": True, "result": "something odd"}, "unknown_error"),
    ],
)
def test_structured_fields(fields: dict[str, Any], expected: str) -> None:
    assert classify(facts_of(result(**fields))).error_class == expected


def test_token_limit_text_gives_the_limit() -> None:
    text = "API Error: Claude's response exceeded the 32000 output token maximum. To configure this behavior, set ..."
    cls = classify(facts_of(result(is_error=True, result=text)))
    assert (cls.error_class, cls.limit) == ("token_limit", 32000)


def test_usage_limit_from_rate_limit_event() -> None:
    cls = classify(
        facts_of(
            {
                "type": "rate_limit_event",
                "rate_limit_info": {
                    "status": "rejected",
                    "resetsAt": 1795636242,
                    "rateLimitType": "seven_day",
                },
            },
            api_error_message("You've hit your weekly limit · resets Dec 1, 7pm (UTC)", api_error_status=429),
            result(is_error=True, api_error_status=429, result="You've hit your weekly limit"),
        )
    )
    assert (cls.error_class, cls.reset_at, cls.limit_type, cls.status) == (
        "usage_limit",
        1795636242,
        "seven_day",
        429,
    )


def test_allowed_rate_limit_event_is_not_a_limit() -> None:
    facts = facts_of(
        {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed_warning"}}, result(result="ok")
    )
    assert classify(facts).error_class is None


def test_usage_limit_pipe_form_even_in_a_successful_result() -> None:
    cls = classify(facts_of(result(result="Claude AI usage limit reached|1764090000")))
    assert (cls.error_class, cls.reset_at) == ("usage_limit", 1764090000)
    cls = classify(facts_of(result(is_error=True, result="Claude AI usage limit reached|1764090000")))
    assert (cls.error_class, cls.reset_at) == ("usage_limit", 1764090000)


@pytest.mark.parametrize(
    ("text", "hour", "minute", "day"),
    [
        ("You've hit your 5-hour limit · resets 7:50pm (UTC)", 19, 50, 25),
        ("5-hour limit reached ∙ resets 3pm", 15, 0, 26),  # 3pm already passed today (18:00 UTC)
        ("Claude usage limit reached. Your limit will reset at 11pm (Europe/Berlin).", 22, 0, 25),
    ],
)
def test_usage_limit_worded_with_clock(text: str, hour: int, minute: int, day: int) -> None:
    cls = classify(facts_of(result(is_error=True, result=text)), now=NOW)
    assert cls.error_class == "usage_limit"
    assert cls.reset_at is not None
    when = dt.datetime.fromtimestamp(cls.reset_at, dt.UTC)
    assert (when.day, when.hour, when.minute) == (day, hour, minute)


def test_reset_clock_edges() -> None:
    assert parse_reset_clock("3pm", None, None) is None
    assert parse_reset_clock("25:00", None, NOW) is None
    assert parse_reset_clock("13pm", None, NOW) is None
    assert (
        parse_reset_clock("12am", "Not/AZone", NOW)
        == dt.datetime(2026, 11, 26, 0, 0, tzinfo=dt.UTC).timestamp()
    )


def test_network_from_api_error_kind() -> None:
    cls = classify(
        facts_of(
            api_error_message("API Error: Connection refused (ECONNREFUSED)", api_error="connection_failed"),
            result(is_error=True, result="API Error: Connection refused (ECONNREFUSED)"),
        )
    )
    assert cls.error_class == "network"


def test_rate_limit_retry_after_is_the_clis_last_delay() -> None:
    cls = classify(
        facts_of(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": 1,
                "retry_delay_ms": 1500,
                "error_status": 429,
            },
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": 2,
                "retry_delay_ms": 3000,
                "error_status": 429,
            },
            result(is_error=True, api_error_status=429, result="API Error: 429"),
        )
    )
    assert (cls.error_class, cls.retry_after) == ("rate_limit", 3.0)


def test_no_result_stall_and_hang() -> None:
    assert classify(facts_of()).error_class == "no_result"
    assert classify(facts_of({"type": "system", "subtype": "init"}), stalled=True).error_class == "stall"
    done = facts_of(result(result="fine"))
    assert classify(done, ended_after_result=True).error_class == "hung_after_result"
    failed = facts_of(result(is_error=True, api_error_status=529))
    assert classify(failed, ended_after_result=True).error_class == "overloaded"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Invalid API key · Please run /login", "auth"),
        ("Error: getaddrinfo ENOTFOUND api.anthropic.com", "network"),
        ('API Error: 529 {"type":"overloaded_error"}', "overloaded"),
        ("API Error: 429 rate_limit_error", "rate_limit"),
        ("Prompt is too long", "context_full"),
        ("Claude AI usage limit reached|1764090000", "usage_limit"),
    ],
)
def test_text_fallback_without_result(text: str, expected: str) -> None:
    assert classify(facts_of(text=text + "\n")).error_class == expected
    assert classify(facts_of(), stderr_tail=text).error_class == expected


def test_every_class_is_documented() -> None:
    doc = classify.__module__
    import importlib

    module_doc = importlib.import_module(doc).__doc__ or ""
    for name in CLASSES:
        assert f"``{name}``" in module_doc
