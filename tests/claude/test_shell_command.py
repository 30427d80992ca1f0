"""Recognising ``claude -p`` in a shell string, and changing only the words a retry may change."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxd.claude.shell_command import recognise

RENDERER = ["/usr/bin/python3", "-I", "-S", "/x/textview.py", "--events", "/s/j 1.claude", "--"]
HEAD = "/usr/bin/python3 -I -S /x/textview.py --events '/s/j 1.claude' --"


@pytest.mark.parametrize(
    "command",
    [
        "claude -p hi",
        "claude --print 'What is 2+2?'",
        "/opt/bin/claude -p hi --model claude-sonnet-4-5",
        "X=1 Y='a b' claude -p hi",
        'env X=1 Z="$HOME" claude -p hi',
        "cd /tmp && claude -p hi",
        "cd '/my dir' && cd sub && env X=1 claude -p hi",
        'claude -p "$PROMPT"',
        "claude -p hi  # a comment",
        "claude -p hi\n",
        "claude -p hi --output-format stream-json --verbose",
    ],
)
def test_shapes_that_are_claude_jobs(command: str) -> None:
    assert recognise(command) is not None


@pytest.mark.parametrize(
    "command",
    [
        "claude -p hi | tr a-z A-Z",
        "claude -p hi > out.txt",
        "claude -p hi 2>&1",
        "claude -p hi; echo done",
        "claude -p hi || echo failed",
        "claude -p hi &",
        "(claude -p hi)",
        "claude -p $(cat prompt.txt)",
        "claude -p `cat prompt.txt`",
        'claude -p "$(cat prompt.txt)"',
        "claude -p <<EOF\nhi\nEOF",
        "claude",  # interactive
        "claude hi",
        "echo claude -p hi",
        "time claude -p hi",
        "claude -p 'open quote",
        "claude -p hi --output-format $FMT",
        "cd /tmp; claude -p hi",
        "claudette -p hi",
    ],
)
def test_shapes_that_stay_shell_jobs(command: str) -> None:
    assert recognise(command) is None


def test_the_configured_program_is_recognised_by_its_basename() -> None:
    assert recognise("/opt/cc/claude-code -p hi", "/usr/local/bin/claude-code") is not None
    assert recognise("claude-code -p hi") is None


def test_flags_read_from_literal_words() -> None:
    found = recognise("X=5 CLAUDE_CODE_MAX_OUTPUT_TOKENS=9000 claude -p 'a b' --model=m --resume s")
    assert found is not None
    assert found.value_of("--model") == "m" and found.resumes and found.own_session
    assert found.assigned("CLAUDE_CODE_MAX_OUTPUT_TOKENS") == "9000"
    assert found.prompt is not None and found.prompt.value == "a b"
    assert found.output_format is None and found.renders_text


def test_rendering_inserts_the_renderer_and_keeps_every_other_byte() -> None:
    found = recognise("cd  /tmp &&  X='1'  claude   -p  \"hi there\"   --output-format text  --model m  ")
    assert found is not None
    assert found.rendered(RENDERER, "sid") == (
        f"cd  /tmp &&  X='1'  {HEAD} claude --output-format stream-json --verbose --session-id sid"
        '   -p  "hi there"  --model m  '
    )


def test_rendering_drops_an_output_format_text_in_one_word() -> None:
    found = recognise("claude -p hi --output-format=text")
    assert found is not None
    assert found.rendered(RENDERER) == f"{HEAD} claude --output-format stream-json --verbose -p hi"


def test_a_stream_json_run_is_not_for_the_text_renderer() -> None:
    found = recognise("claude -p hi --output-format stream-json --verbose")
    assert found is not None and not found.renders_text


def test_prompt_edit_requotes_only_the_prompt_word() -> None:
    command = 'env A=1 claude -p "it\'s  $ fine"  --model m # note'
    found = recognise(command)
    assert found is not None
    edited = found.with_prompt(lambda p: p + "\n\nBe concise.")
    assert edited is not None
    assert edited.startswith("env A=1 claude -p ") and edited.endswith("  --model m # note")
    assert shlex.split(edited, comments=True)[4] == "it's  $ fine\n\nBe concise."


def test_a_prompt_with_an_expansion_is_not_edited() -> None:
    found = recognise('claude -p "$PROMPT"')
    assert found is not None and found.with_prompt(str.upper) is None


def test_inline_token_variable_is_replaced_in_place() -> None:
    found = recognise("CLAUDE_CODE_MAX_OUTPUT_TOKENS=100 claude -p hi")
    assert found is not None
    assert found.with_assigned("CLAUDE_CODE_MAX_OUTPUT_TOKENS", "64000") == (
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS=64000 claude -p hi"
    )
    assert found.with_assigned("OTHER", "1") is None


@given(st.text(min_size=1).filter(lambda p: "\x00" not in p and not p.startswith("-")))
def test_any_prompt_survives_quoting(prompt: str) -> None:
    command = f"cd /w && claude -p {shlex.quote(prompt)} --max-turns 3"
    found = recognise(command)
    assert found is not None and found.prompt is not None and found.prompt.value == prompt
    edited = found.with_prompt(lambda p: p + " and more")
    assert edited is not None
    assert shlex.split(edited)[5] == prompt + " and more"
    assert edited.startswith("cd /w && claude -p ") and edited.endswith(" --max-turns 3")
