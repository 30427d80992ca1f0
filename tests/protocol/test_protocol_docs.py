"""docs/protocol.md documents every method, notification and error code, with examples that decode.

Every ```json block in the document must be JSON (one value, or one value per
line as on the wire).  Under a method heading (### `job.start`) each request
must be a valid request for that method whose params decode into the method's
params Struct, each reply's ``result`` must decode into its result Struct
without fields the Struct does not have, and each reply must answer a request
shown in the same section.  Under a notification heading (### `job.output`
(notification)) every example must be that notification with params that
decode.  Replies anywhere must be well-formed JSON-RPC with a known error code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from ccxd.protocol import LEGACY_METHODS, LEGACY_NOTIFICATIONS, METHODS, NOTIFICATIONS, ErrorCode
from ccxd.rpc.codec import Call, decode_params, parse

DOC_PATH = Path(__file__).parents[2] / "docs" / "protocol.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
HEADING = re.compile(r"^(#{1,6}) (.*?)\s*$", re.M)
ENTRY = re.compile(r"^`([^`]+)`( \(notification\))?$")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)


def split_sections() -> list[tuple[str, str]]:
    """(heading text, body up to the next heading of any level), in document order."""
    matches = list(HEADING.finditer(DOC))
    out = []
    for m, nxt in zip(matches, [*matches[1:], None], strict=True):
        out.append((m.group(2), DOC[m.end() : nxt.start() if nxt else len(DOC)]))
    return out


SECTIONS = split_sections()


def entry_sections() -> dict[tuple[str, bool], list[str]]:
    """Bodies of the ### `name` and ### `name` (notification) sections."""
    found: dict[tuple[str, bool], list[str]] = {}
    for title, body in SECTIONS:
        m = ENTRY.match(title)
        if m:
            found.setdefault((m.group(1), bool(m.group(2))), []).append(body)
    return found


ENTRIES = entry_sections()


def json_values(body: str) -> Iterator[Any]:
    """Every JSON value in the ```json blocks of ``body``."""
    for lang, text in BLOCK.findall(body):
        if lang != "json":
            continue
        try:
            yield json.loads(text)
            continue
        except json.JSONDecodeError:
            pass
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise AssertionError(f"not JSON (line {n} of a block): {line[:120]!r}: {exc}") from None


def messages(body: str) -> Iterator[dict[str, Any]]:
    """JSON-RPC messages in ``body``; the members of a batch count one by one."""
    for value in json_values(body):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):  # a batch may show a member that is not even an object
                yield item


def kind(msg: dict[str, Any]) -> str:
    if "result" in msg or "error" in msg:
        return "reply"
    if "method" in msg:
        return "request" if "id" in msg else "notification"
    raise AssertionError(f"neither request, reply nor notification: {msg!r}")


def unknown_fields(value: Any, t: mi.Type, path: str = "$") -> Iterator[str]:
    """Paths of object members that ``t`` has no field for (msgspec ignores them when decoding)."""
    if isinstance(t, mi.Metadata):
        yield from unknown_fields(value, t.type, path)
    elif isinstance(t, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in t.fields}
        for key, item in value.items():
            if key in fields:
                yield from unknown_fields(item, fields[key].type, f"{path}.{key}")
            elif key != t.tag_field:  # a tagged struct's tag (e.g. claude.event's "kind")
                yield f"{path}.{key}"
    elif isinstance(t, mi.ListType) and isinstance(value, list):
        for i, item in enumerate(value):
            yield from unknown_fields(item, t.item_type, f"{path}[{i}]")
    elif isinstance(t, mi.DictType) and isinstance(value, dict):
        for key, item in value.items():
            yield from unknown_fields(item, t.value_type, f"{path}.{key}")
    elif isinstance(t, mi.UnionType):
        # A tagged union: only the member the tag names counts.
        tagged = [
            m
            for m in t.types
            if isinstance(m, mi.StructType)
            and isinstance(value, dict)
            and m.tag_field in value
            and value[m.tag_field] == m.tag
        ]
        for member in tagged or t.types:
            yield from unknown_fields(value, member, path)


def decode_strictly(value: Any, struct_type: type[msgspec.Struct], what: str) -> msgspec.Struct:
    extra = list(unknown_fields(value, mi.type_info(struct_type)))
    assert not extra, f"{what}: fields {struct_type.__name__} does not have: {extra}"
    try:
        return msgspec.json.decode(msgspec.json.encode(value), type=struct_type)
    except msgspec.ValidationError as exc:
        raise AssertionError(f"{what} does not decode into {struct_type.__name__}: {exc}") from None


def check_reply_shape(msg: dict[str, Any]) -> None:
    assert msg.get("jsonrpc") == "2.0", msg
    assert "id" in msg and (msg["id"] is None or type(msg["id"]) in (int, str)), msg
    assert ("result" in msg) != ("error" in msg), msg
    assert set(msg) <= {"jsonrpc", "id", "result", "error"}, msg
    if "error" in msg:
        err = msg["error"]
        assert set(err) <= {"code", "message", "data"}, msg
        assert type(err["code"]) is int and type(err["message"]) is str, msg
        assert err["code"] in {int(c) for c in ErrorCode}, f"undocumented error code in {msg}"


# -- coverage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_has_exactly_one_section(method: str) -> None:
    assert len(ENTRIES.get((method, False), [])) == 1, f"docs/protocol.md needs one '### `{method}`' section"


@pytest.mark.parametrize("name", sorted(NOTIFICATIONS))
def test_every_notification_has_exactly_one_section(name: str) -> None:
    key = (name, True)
    assert len(ENTRIES.get(key, [])) == 1, f"docs/protocol.md needs one '### `{name}` (notification)' section"


def test_no_section_documents_something_that_does_not_exist() -> None:
    for name, is_notification in ENTRIES:
        known = (
            {**NOTIFICATIONS, **LEGACY_NOTIFICATIONS} if is_notification else {**METHODS, **LEGACY_METHODS}
        )
        assert name in known, name


# -- cc_executor compatibility (WebSocket only) ------------------------------------------------------


@pytest.mark.parametrize("method", sorted(LEGACY_METHODS))
def test_every_legacy_method_is_documented_with_an_example_that_decodes(method: str) -> None:
    bodies = ENTRIES.get((method, False), [])
    assert len(bodies) == 1, f"docs/protocol.md needs one '### `{method}`' section"
    params_type, result_type = LEGACY_METHODS[method]
    requests = replies = 0
    for msg in messages(bodies[0]):
        what = kind(msg)
        if what == "request":
            assert msg["method"] == method, msg
            decode_strictly(msg.get("params", {}), params_type, f"{method} params")
            requests += 1
        elif what == "reply":
            check_reply_shape(msg)
            if "result" in msg:
                decode_strictly(msg["result"], result_type, f"{method} result")
                replies += 1
        else:
            assert msg["method"] in LEGACY_NOTIFICATIONS, msg["method"]
            decode_strictly(msg["params"], LEGACY_NOTIFICATIONS[msg["method"]], f"{msg['method']} params")
    assert requests and replies, f"the {method} section needs a request and a successful reply"


@pytest.mark.parametrize("name", sorted(LEGACY_NOTIFICATIONS))
def test_every_legacy_notification_is_documented_with_an_example_that_decodes(name: str) -> None:
    bodies = ENTRIES.get((name, True), [])
    assert len(bodies) == 1, f"docs/protocol.md needs one '### `{name}` (notification)' section"
    found = list(messages(bodies[0]))
    assert found, f"the {name} section shows no example"
    for msg in found:
        assert kind(msg) == "notification" and msg["method"] == name, msg
        decode_strictly(msg["params"], LEGACY_NOTIFICATIONS[name], f"{name} params")


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_error_code_is_in_the_table_with_its_name(code: ErrorCode) -> None:
    rows = [line for line in DOC.splitlines() if line.startswith(f"| `{int(code)}` |")]
    assert rows, f"error code {int(code)} ({code.name}) is not in the error table"
    assert f"`{code.name}`" in rows[0], rows[0]


# -- examples ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_examples_decode_into_the_methods_structs(method: str) -> None:
    body = ENTRIES[(method, False)][0]
    params_type, result_type = METHODS[method]
    request_ids = []
    results = 0
    for msg in messages(body):
        what = kind(msg)
        if what == "request":
            assert msg["method"] == method, f"a {msg['method']} request in the {method} section"
            parsed = parse(msgspec.json.encode(msg))
            call = parsed.calls[0]
            assert isinstance(call, Call), f"invalid request in the {method} section: {call}"
            params = decode_params(method, call.params)  # raises with msgspec's message
            assert isinstance(params, params_type)
            request_ids.append(msg["id"])
        elif what == "reply":
            check_reply_shape(msg)
            assert msg["id"] in request_ids, f"reply {msg['id']!r} answers no request shown before it"
            if "result" in msg:
                decode_strictly(msg["result"], result_type, f"{method} result")
                results += 1
        else:
            assert msg["method"] in NOTIFICATIONS, msg["method"]
            decode_strictly(msg["params"], NOTIFICATIONS[msg["method"]], f"{msg['method']} params")
    assert request_ids, f"the {method} section shows no request"
    assert results, f"the {method} section shows no successful reply"


@pytest.mark.parametrize("name", sorted(NOTIFICATIONS))
def test_notification_examples_decode_into_their_struct(name: str) -> None:
    found = list(messages(ENTRIES[(name, True)][0]))
    assert found, f"the {name} section shows no example"
    for msg in found:
        assert kind(msg) == "notification" and msg["method"] == name, msg
        assert set(msg) == {"jsonrpc", "method", "params"} and msg["jsonrpc"] == "2.0", msg
        decode_strictly(msg["params"], NOTIFICATIONS[name], f"{name} params")


def test_every_json_block_is_json_and_every_reply_is_well_formed() -> None:
    replies = 0
    for _title, body in SECTIONS:
        for msg in messages(body):
            if kind(msg) == "reply":
                check_reply_shape(msg)
                replies += 1
            elif kind(msg) == "notification":  # from the daemon, or a client's request without id
                known = {*NOTIFICATIONS, *METHODS, *LEGACY_NOTIFICATIONS, *LEGACY_METHODS}
                assert msg["method"] in known, msg
    assert replies > len(METHODS)


def test_every_error_code_that_can_be_sent_has_a_literal_example() -> None:
    shown = {msg["error"]["code"] for _t, body in SECTIONS for msg in messages(body) if "error" in msg}
    # A bug, a race with shutdown, a reserved code, a Redis outage: no literal example to capture.
    hard_to_provoke = {
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.HOOK_REFUSED,
        ErrorCode.STORE_UNAVAILABLE,
    }
    missing = {c for c in ErrorCode if int(c) not in shown} - hard_to_provoke
    assert not missing, f"no example for {sorted(c.name for c in missing)}"
