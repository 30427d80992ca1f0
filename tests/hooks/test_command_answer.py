"""How a hook program's exit code and stdout become a HookResult (ccxd.hooks.command.interpret)."""

from __future__ import annotations

import pytest

from ccxd.hooks.command import CommandReply, HookFailure, interpret


def reply(code: int | None = 0, out: bytes = b"", err: bytes = b"", sig: int | None = None) -> CommandReply:
    return CommandReply(code=code, signal=sig, stdout=out, stderr=err, timed_out=False)


def test_exit_0_with_no_output_changes_nothing() -> None:
    r = interpret(reply())
    assert not r.block and r.update == {} and r.annotations == {}


def test_exit_2_blocks_with_stderr_as_the_reason() -> None:
    r = interpret(reply(2, out=b'{"ignored": true}', err=b"  rm is not allowed here\n"))
    assert r.block and r.reason == "rm is not allowed here"


def test_exit_2_without_stderr_still_blocks_with_a_reason() -> None:
    r = interpret(reply(2))
    assert r.block and "exit code 2" in r.reason


@pytest.mark.parametrize(
    ("code", "err", "expected"),
    [(1, b"boom", "exit code 1: boom"), (127, b"", "exit code 127")],
)
def test_other_exit_codes_are_failures(code: int, err: bytes, expected: str) -> None:
    with pytest.raises(HookFailure, match=expected):
        interpret(reply(code, err=err))


def test_killed_by_a_signal_is_a_failure() -> None:
    with pytest.raises(HookFailure, match="killed by signal 9"):
        interpret(reply(None, sig=9))


@pytest.mark.parametrize("out", [b"not json", b'{"block": tru', b"\xff\xfe"])
def test_invalid_json_is_a_failure_that_quotes_the_output(out: bytes) -> None:
    with pytest.raises(HookFailure, match="invalid JSON on stdout"):
        interpret(reply(out=out))


def test_json_that_is_not_an_object_is_a_failure() -> None:
    with pytest.raises(HookFailure, match="must be a JSON object, got list"):
        interpret(reply(out=b"[1, 2]"))


def test_ccxd_members() -> None:
    r = interpret(
        reply(
            out=b'{"update": {"command": "echo new", "env": {"A": "1"}}, "annotations": {"k": 1}, "message": "m"}'
        )
    )
    assert r.update == {"command": "echo new", "env": {"A": "1"}}
    assert r.annotations == {"k": 1} and r.message == "m" and not r.block


def test_ccxd_members_of_the_wrong_type_are_a_failure() -> None:
    with pytest.raises(HookFailure, match=r"invalid answer: Expected `object`, got `str` - at `\$.update`"):
        interpret(reply(out=b'{"update": "echo"}'))


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b'{"decision": "block", "reason": "no"}', "no"),
        (b'{"continue": false, "stopReason": "stop"}', "stop"),
        (
            b'{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",'
            b' "permissionDecisionReason": "denied"}}',
            "denied",
        ),
    ],
)
def test_claude_code_answers_that_block(answer: bytes, reason: str) -> None:
    r = interpret(reply(out=answer))
    assert r.block and r.reason == reason


def test_claude_code_updated_input_rewrites_the_command() -> None:
    r = interpret(
        reply(
            out=b'{"hookSpecificOutput": {"permissionDecision": "allow", "updatedInput": {"command": "ls -la"}},'
            b' "systemMessage": "rewrote"}'
        )
    )
    assert r.update == {"command": "ls -la"} and r.message == "rewrote" and not r.block


def test_claude_code_approve_is_not_a_block() -> None:
    r = interpret(reply(out=b'{"decision": "approve", "suppressOutput": true}'))
    assert not r.block
