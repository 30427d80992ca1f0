"""JSON-RPC 2.0 decoding (ccxd.rpc.codec): every case of the spec, no sockets."""

from __future__ import annotations

import typing

import pytest
from msgspec import Raw

from ccxd.protocol import (
    ErrorCode,
    ErrorResponse,
    HistoryStatus,
    JobReason,
    JobRef,
    JobState,
    ListParams,
    StartParams,
)
from ccxd.rpc.codec import Call, decode_params, parse


def single_error(raw: bytes) -> ErrorResponse:
    parsed = parse(raw)
    assert parsed.batch is False
    assert len(parsed.calls) == 1
    item = parsed.calls[0]
    assert isinstance(item, ErrorResponse), item
    return item


def single_call(raw: bytes) -> Call:
    parsed = parse(raw)
    assert parsed.batch is False
    assert len(parsed.calls) == 1
    item = parsed.calls[0]
    assert isinstance(item, Call), item
    return item


# -- parse errors ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jsonrpc":"2.0","method":"daemon.ping","id":1',  # truncated
        b'{"jsonrpc":"2.0","method":"daemon.ping","id":1} trailing',
        b"",
        b"   ",
        b"{'jsonrpc':'2.0'}",
        b'[{"jsonrpc":"2.0","method":"daemon.ping","id":1},',
    ],
)
def test_malformed_json_is_a_parse_error_with_null_id(raw: bytes) -> None:
    err = single_error(raw)
    assert err.id is None
    assert err.error.code == ErrorCode.PARSE_ERROR == -32700
    assert err.error.message.startswith("parse error: ")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jsonrpc":"2.0","method":"daemon.ping","id":"\xff"}',
        b'{"jsonrpc":"2.0","method":"daemon.p\xc3ing","id":1}',
        b'[{"jsonrpc":"2.0","method":"daemon.ping","id":1,"params":{"x":"\xed\xa0\x80"}}]',
        b"\xff",
    ],
)
def test_invalid_utf8_is_a_parse_error_not_an_exception(raw: bytes) -> None:
    err = single_error(raw)
    assert err.id is None
    assert err.error.code == ErrorCode.PARSE_ERROR
    assert "UTF-8" in err.error.message


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 50_000 + b"]" * 50_000,
        b'{"jsonrpc":"2.0","method":"daemon.ping","id":1,"params":{"a":'
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}}",
        b'{"jsonrpc":"2.0","method":"daemon.ping","id":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ],
)
def test_absurdly_deep_nesting_is_a_parse_error_not_an_exception(raw: bytes) -> None:
    err = single_error(raw)
    assert err.error.code == ErrorCode.PARSE_ERROR
    assert "nested too deeply" in err.error.message


# -- invalid requests ----------------------------------------------------------


def test_missing_jsonrpc_member_is_invalid_request_keeping_the_id() -> None:
    err = single_error(b'{"method":"daemon.ping","id":7}')
    assert err.error.code == ErrorCode.INVALID_REQUEST == -32600
    assert err.id == 7
    assert err.error.message == "invalid request: Object missing required field `jsonrpc`"


@pytest.mark.parametrize("version", ['"1.0"', '"2"', "2.0", "null"])
def test_wrong_jsonrpc_version_is_invalid_request(version: str) -> None:
    err = single_error(f'{{"jsonrpc":{version},"method":"daemon.ping","id":"a"}}'.encode())
    assert err.error.code == ErrorCode.INVALID_REQUEST
    assert err.id == "a"
    assert "`$.jsonrpc`" in err.error.message


@pytest.mark.parametrize("method", ["5", "null", '["daemon.ping"]', '{"name":"daemon.ping"}'])
def test_non_string_method_is_invalid_request(method: str) -> None:
    err = single_error(f'{{"jsonrpc":"2.0","method":{method},"id":3}}'.encode())
    assert err.error.code == ErrorCode.INVALID_REQUEST
    assert err.id == 3
    assert "`$.method`" in err.error.message


def test_missing_method_is_invalid_request() -> None:
    err = single_error(b'{"jsonrpc":"2.0","id":4}')
    assert err.error.code == ErrorCode.INVALID_REQUEST
    assert err.id == 4
    assert "`method`" in err.error.message


@pytest.mark.parametrize("bad_id", ["1.5", "1.0", "1e3", "true", "false", '{"a":1}', "[1]"])
def test_float_bool_object_and_array_ids_are_invalid_requests_answered_with_null_id(bad_id: str) -> None:
    err = single_error(f'{{"jsonrpc":"2.0","method":"daemon.ping","id":{bad_id}}}'.encode())
    assert err.error.code == ErrorCode.INVALID_REQUEST
    assert err.id is None
    assert "`$.id`" in err.error.message


@pytest.mark.parametrize("top", [b"42", b'"daemon.ping"', b"null", b"true"])
def test_a_message_that_is_not_an_object_is_invalid_request(top: bytes) -> None:
    err = single_error(top)
    assert err.error.code == ErrorCode.INVALID_REQUEST
    assert err.id is None


def test_empty_batch_is_one_invalid_request_reply_not_an_array() -> None:
    err = single_error(b"  [ ]  ")
    assert err.error.code == ErrorCode.INVALID_REQUEST
    assert err.error.message == "invalid request: empty batch"
    assert err.id is None


# -- valid requests --------------------------------------------------------------


@pytest.mark.parametrize(
    ("id_json", "expected"),
    [
        ("1", 1),
        ("-5", -5),
        ('"abc"', "abc"),
        ('""', ""),
        ("null", None),
        ("12345678901234567890123", 12345678901234567890123),
    ],
)
def test_int_string_and_null_ids_are_requests(id_json: str, expected: object) -> None:
    call = single_call(f'{{"jsonrpc":"2.0","method":"daemon.ping","id":{id_json}}}'.encode())
    assert call.method == "daemon.ping"
    assert call.id == expected
    assert call.is_notification is False  # a null id is still a request that gets a reply


def test_a_request_without_id_is_a_notification() -> None:
    call = single_call(b'{"jsonrpc":"2.0","method":"job.cancel","params":{"job_id":"x"}}')
    assert call.is_notification is True
    assert call.id is None
    assert call.params is not None and bytes(call.params) == b'{"job_id":"x"}'


def test_absent_params_are_none_and_unknown_members_are_ignored() -> None:
    call = single_call(b'{"jsonrpc":"2.0","method":"daemon.ping","id":1,"extra":true}')
    assert call.params is None


def test_batch_keeps_order_and_mixes_calls_with_errors() -> None:
    parsed = parse(
        b' [{"jsonrpc":"2.0","method":"daemon.ping","id":1},'
        b'{"jsonrpc":"2.0","method":"daemon.ping"},'
        b'{"jsonrpc":"1.0","method":"daemon.ping","id":3},'
        b"42,"
        b'{"jsonrpc":"2.0","method":"job.get","id":"x","params":{"job_id":"j"}}]'
    )
    assert parsed.batch is True
    kinds = [type(item).__name__ for item in parsed.calls]
    assert kinds == ["Call", "Call", "ErrorResponse", "ErrorResponse", "Call"]
    first, notification, wrong_version, not_object, last = parsed.calls
    assert isinstance(first, Call) and first.id == 1 and not first.is_notification
    assert isinstance(notification, Call) and notification.is_notification
    assert isinstance(wrong_version, ErrorResponse) and wrong_version.id == 3
    assert wrong_version.error.code == ErrorCode.INVALID_REQUEST
    assert isinstance(not_object, ErrorResponse) and not_object.id is None
    assert isinstance(last, Call) and last.method == "job.get" and last.id == "x"


def test_a_batch_of_one_is_still_a_batch() -> None:
    parsed = parse(b'[{"jsonrpc":"2.0","method":"daemon.ping","id":1}]')
    assert parsed.batch is True
    assert len(parsed.calls) == 1


# -- params ----------------------------------------------------------------------


def test_params_decode_into_the_method_struct() -> None:
    params = decode_params("job.start", Raw(b'{"command":["ls","-l"],"timeout":0,"tags":["a"]}'))
    assert isinstance(params, StartParams)
    assert params.command == ["ls", "-l"]
    assert params.timeout == 0
    assert params.tags == ["a"]


def test_absent_params_mean_an_empty_object() -> None:
    assert decode_params("job.list", None) == ListParams()
    with pytest.raises(ValueError, match=r"^Object missing required field `job_id` - at `\$\.params`$"):
        decode_params("job.get", None)


def test_params_by_position_are_refused() -> None:
    with pytest.raises(ValueError, match=r"by-name.*`\$\.params`"):
        decode_params("job.get", Raw(b' ["abc"]'))


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("job.list", b'{"limit":"ten"}', "Expected `int`, got `str` - at `$.params.limit`"),
        ("job.list", b'{"limit":0}', "Expected `int` >= 1, got 0 - at `$.params.limit`"),
        ("job.list", b'{"state":"sleeping"}', "Invalid enum value 'sleeping' (one of: queued, starting, running, paused, finished) - at `$.params.state`"),
        ("job.start", b'{"command":"x","env":{"A":1}}', "Expected `str`, got `int` - at `$.params.env[...]`"),
        ("job.start", b'{"command":["ls",1]}', "Expected `str`, got `int` - at `$.params.command[1]`"),
        ("job.start", b'{"command":"x","timeout":-1}', "Expected `float` >= 0.0, got -1 - at `$.params.timeout`"),
        (
            "job.start",
            b'{"command":"x","colour":"red"}',
            "Object contains unknown field `colour` - at `$.params`",
        ),
        ("job.get", b"{}", "Object missing required field `job_id` - at `$.params`"),
        ("job.get", b"null", "Expected `object`, got `null` - at `$.params`"),
        ("job.get", b"5", "Expected `object`, got `int` - at `$.params`"),
    ],
)
def test_wrong_params_report_msgspecs_message_with_the_path_under_params(
    method: str, params: bytes, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        decode_params(method, Raw(params))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (b'{"state":"`$x"}', "Invalid enum value '`$x' (one of: queued, starting, running, paused, finished) - at `$.params.state`"),
        (
            b'{"state":" - at `$.x"}',
            "Invalid enum value ' - at `$.x' (one of: queued, starting, running, paused, finished) - at `$.params.state`",
        ),
        (b'{"`$x":1}', "Object contains unknown field ``$x` - at `$.params`"),
        (b'{" - at `$x":1}', "Object contains unknown field ` - at `$x` - at `$.params`"),
    ],
)
def test_the_clients_own_text_is_never_rewritten_as_a_path(params: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        decode_params("job.list", Raw(params))
    assert str(info.value) == message


def test_params_of_another_method_do_not_fit() -> None:
    assert decode_params("job.cancel", Raw(b'{"job_id":"a"}')) == JobRef("a")
    with pytest.raises(ValueError, match="unknown field `offset`"):
        decode_params("job.cancel", Raw(b'{"job_id":"a","offset":3}'))


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        (
            "job.start",
            b'{"command":"x","memory":"2X"}',
            'Expected a size such as 512M, 2G or 1.5GiB (bytes, or a number with K, M, G or T), got "2X"'
            " - at `$.params.memory`",
        ),
        (
            "history.list",
            b'{"status":"bogus"}',
            "Invalid enum value 'bogus' (one of: queued, starting, running, paused, finished, exited,"
            " timeout, idle_timeout, cancelled, killed, failed_to_start, lost, oom, dependency_failed,"
            " budget_exceeded)"
            " - at `$.params.status`",
        ),
        # A long value is not echoed back whole: the field and the form say enough.
        ("job.start", b'{"command":"x","timeout":-' + b"1" * 100 + b"}", "Expected `float` >= 0.0 - at"),
    ],
)
def test_a_refused_value_is_quoted_and_its_form_said_in_words(method: str, params: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        decode_params(method, Raw(params))
    assert str(info.value).startswith(message)


def test_history_status_names_every_state_and_reason() -> None:
    assert set(typing.get_args(HistoryStatus)) == {*JobState, *JobReason}
