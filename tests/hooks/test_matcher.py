"""Matchers, job kinds and partial updates of job.start params (no I/O)."""

from __future__ import annotations

import msgspec
import pytest

from ccxd.hooks.context import job_kind, make_context
from ccxd.hooks.matcher import Matcher, MatchError
from ccxd.hooks.runner import apply_update
from ccxd.protocol import HookMatch, StartParams


def ctx(command: str | list[str] = "echo hi", **options: object):  # type: ignore[no-untyped-def]
    return make_context("pre_execution", StartParams(command=command, **options), "j1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("claude -p hi", "claude"),
        ("FOO=1 /usr/local/bin/claude -p 'x y'", "claude"),
        ("exec claude --version", "claude"),
        (["/opt/node/bin/claude", "-p", "hi"], "claude"),
        ("echo claude", "shell"),
        ("claudette", "shell"),
        ("echo 'unbalanced", "shell"),
    ],
)
def test_job_kind(command: str | list[str], kind: str) -> None:
    assert job_kind(StartParams(command=command)) == kind


def test_an_empty_matcher_matches_everything() -> None:
    assert Matcher(HookMatch()).matches(ctx())


def test_every_member_that_is_set_must_match() -> None:
    m = Matcher(
        HookMatch(command=r"^git (push|commit)", kind="shell", session="proj-*", tags=["ci", "nightly"])
    )
    assert m.matches(ctx("git push origin", session="proj-a", tags=["ci"]))
    assert not m.matches(ctx("git pull", session="proj-a", tags=["ci"]))
    assert not m.matches(ctx("git push", session="other", tags=["ci"]))
    assert not m.matches(ctx("git push", tags=["ci"]))  # no session at all
    assert not m.matches(ctx("git push", session="proj-a", tags=["dev"]))
    assert not Matcher(HookMatch(kind="claude")).matches(ctx("git push"))


def test_argv_commands_are_matched_joined_with_spaces() -> None:
    assert Matcher(HookMatch(command="rm -rf")).matches(ctx(["rm", "-rf", "x"]))


def test_an_invalid_pattern_is_reported() -> None:
    with pytest.raises(MatchError, match="invalid command pattern '\\(': missing"):
        Matcher(HookMatch(command="("))


def test_update_replaces_fields_and_merges_env() -> None:
    p = StartParams(command="echo a", env={"A": "1", "B": "2"}, timeout=5)
    new = apply_update(
        p, {"command": ["echo", "b"], "env": {"B": "3", "C": "4"}, "cwd": "/tmp", "timeout": 0}
    )
    assert new.command == ["echo", "b"] and new.cwd == "/tmp" and new.timeout == 0
    assert new.env == {"A": "1", "B": "3", "C": "4"}
    assert p.command == "echo a" and p.env == {"A": "1", "B": "2"}  # the original is untouched


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"timeout": "soon"}, r"Expected `float \| null`, got `str` - at `\$.timeout`"),
        ({"command": ""}, r"at `\$.command`"),
        ({"no_such_field": 1}, "unknown field `no_such_field`"),
    ],
)
def test_an_invalid_update_is_refused_with_msgspecs_message(update: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        apply_update(StartParams(command="x"), update)


def test_context_carries_claude_codes_members() -> None:
    c = ctx("ls -la", session="s1", cwd="/tmp")
    data = msgspec.json.decode(msgspec.json.encode(c))
    assert data["hook_event_name"] == "PreToolUse" and data["tool_name"] == "Bash"
    assert (
        data["tool_input"] == {"command": "ls -la"} and data["session_id"] == "s1" and data["cwd"] == "/tmp"
    )
    assert data["params"]["command"] == "ls -la"
