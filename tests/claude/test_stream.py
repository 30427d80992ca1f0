"""The stream-json parser: any chunking gives the same events; odd lines are kept."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from ccxd.claude.stream import StreamJsonParser, parse_line
from ccxd.protocol.claude_events import (
    ApiRetry,
    Assistant,
    ClaudeEvent,
    Init,
    Oversize,
    RateLimit,
    Result,
    StreamEvent,
    System,
    TextLine,
    Unknown,
    User,
)

LINES = [
    {"type": "system", "subtype": "init", "session_id": "s-1", "model": "m", "cwd": "/w", "tools": ["Bash"]},
    {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 1,
        "max_retries": 10,
        "retry_delay_ms": 537,
        "error_status": 429,
        "error": "rate_limit",
        "session_id": "s-1",
    },
    {
        "type": "assistant",
        "session_id": "s-1",
        "message": {
            "id": "m1",
            "role": "assistant",
            "content": [
                {"type": "text", "text": "héllo ✓"},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
            ],
        },
    },
    {
        "type": "user",
        "session_id": "s-1",
        "message": {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x" * 5000}],
        },
    },
    {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": "rejected", "resetsAt": 1795636242, "rateLimitType": "five_hour"},
        "session_id": "s-1",
    },
    {"type": "stream_event", "event": {"type": "content_block_delta"}, "session_id": "s-1"},
    {
        "type": "system",
        "subtype": "compact_boundary",
        "session_id": "s-1",
        "compact_metadata": {"pre_tokens": 9},
    },
    {"type": "brand_new_event", "payload": [1, 2, 3]},
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "done",
        "session_id": "s-1",
        "total_cost_usd": 0.25,
        "num_turns": 3,
        "duration_ms": 1234,
        "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 5},
    },
]
STREAM = b"".join(json.dumps(x, ensure_ascii=False).encode() + b"\n" for x in LINES)
KINDS = [Init, ApiRetry, Assistant, User, RateLimit, StreamEvent, System, Unknown, Result]


def parse_all(chunks: list[bytes], max_line: int | None = None) -> list[ClaudeEvent]:
    parser = StreamJsonParser() if max_line is None else StreamJsonParser(max_line)
    out: list[ClaudeEvent] = []
    for c in chunks:
        out += parser.feed(c)
    return out + parser.flush()


def test_every_event_type_is_typed_or_kept() -> None:
    events = parse_all([STREAM])
    assert [type(e) for e in events] == KINDS
    init, retry, assistant, user, rate, _, system, unknown, result = events
    assert isinstance(init, Init) and init.session_id == "s-1" and init.tools == ["Bash"]
    assert isinstance(retry, ApiRetry) and (retry.attempt, retry.error_status, retry.retry_delay_ms) == (
        1,
        429,
        537,
    )
    assert isinstance(assistant, Assistant) and assistant.text == "héllo ✓"
    assert [t.name for t in assistant.tool_uses] == ["Bash"]
    assert isinstance(user, User) and user.message.content[0].tool_use_id == "t1"  # type: ignore[union-attr]
    assert isinstance(rate, RateLimit) and rate.rate_limit_info.resetsAt == 1795636242
    assert isinstance(system, System) and system.subtype == "compact_boundary"
    assert system.raw["compact_metadata"] == {"pre_tokens": 9}
    assert (
        isinstance(unknown, Unknown)
        and unknown.type == "brand_new_event"
        and unknown.raw["payload"] == [1, 2, 3]
    )
    assert isinstance(result, Result) and result.total_cost_usd == 0.25 and result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (10, 20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert parse_all(chunks) == parse_all([STREAM])


def test_a_line_of_many_mib_in_small_chunks() -> None:
    big = {
        "type": "user",
        "message": {"content": [{"type": "tool_result", "tool_use_id": "t", "content": "y" * (20 << 20)}]},
    }
    data = json.dumps(big).encode() + b"\n" + STREAM
    events = parse_all([data[i : i + 65536] for i in range(0, len(data), 65536)])
    assert isinstance(events[0], User) and len(events) == 1 + len(LINES)


def test_oversize_line_is_dropped_not_buffered() -> None:
    data = b'{"type":"user","x":"' + b"z" * 20000 + b'"}\n' + STREAM
    events = parse_all([data[i : i + 100] for i in range(0, len(data), 100)], max_line=8000)
    assert isinstance(events[0], Oversize) and events[0].bytes == len(data.split(b"\n")[0])
    assert [type(e) for e in events[1:]] == KINDS


def test_text_and_broken_lines_become_text_events() -> None:
    events = parse_all([b'plain words\n\n{not json\n[1,2]\n\xff\xfe\n{"type": 5}\ntail without newline'])
    assert [type(e) for e in events] == [TextLine, TextLine, TextLine, TextLine, Unknown, TextLine]
    assert isinstance(events[0], TextLine) and events[0].text == "plain words"
    assert isinstance(events[-1], TextLine) and events[-1].text == "tail without newline"


def test_unexpected_field_types_keep_the_event() -> None:
    ev = parse_line(b'{"type":"result","is_error":"yes","num_turns":"three"}')
    assert isinstance(ev, Unknown) and ev.type == "result" and ev.raw["num_turns"] == "three"


def test_events_round_trip_with_their_kind() -> None:
    for ev in parse_all([STREAM]):
        wire = msgspec.json.encode(ev)
        assert msgspec.json.decode(wire, type=ClaudeEvent) == ev
