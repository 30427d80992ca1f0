"""The text Claude Code prints for its results, made from stream-json result events (no I/O).

The end-to-end comparison with the real CLI is in tests/claude/test_claude_shell_jobs.py.
"""

from __future__ import annotations

from typing import Any

from ccxd.claude.textview import TextPrinter


def success(text: str, **kw: Any) -> dict[str, Any]:
    return {"type": "result", "subtype": "success", "is_error": False, "result": text, **kw}


def run(events: list[dict[str, Any]], **limits: str) -> str:
    p = TextPrinter(**limits)
    return "".join(p.result(e) for e in events) + p.finish()


def test_a_newline_is_added_only_when_missing() -> None:
    assert run([success("Four.")]) == "Four.\n"
    assert run([success("line1\nline2\n")]) == "line1\nline2\n"
    assert run([success("\n\n  spaced  \n\n")]) == "\n\n  spaced  \n\n"
    assert run([success("a\r\nb")]) == "a\r\nb\n"


def test_an_error_result_prints_its_text() -> None:
    err = success("API Error: Request rejected (429) · slow down", is_error=True)
    assert run([err]) == "API Error: Request rejected (429) · slow down\n"


def test_limits_print_without_a_newline() -> None:
    turns = {
        "type": "result",
        "subtype": "error_max_turns",
        "errors": ["Reached maximum number of turns (1)"],
    }
    assert run([turns], max_turns="1") == "Error: Reached max turns (1)"
    assert run([turns]) == "Error: Reached max turns (1)"
    budget = {"type": "result", "subtype": "error_max_budget_usd"}
    assert run([budget], max_budget_usd="0.50") == "Error: Exceeded USD budget (0.5)"
    assert run([budget], max_budget_usd="2") == "Error: Exceeded USD budget (2)"
    assert run([{"subtype": "error_during_execution"}]) == "Execution error"


def test_a_blank_answer_is_printed_once_at_the_end() -> None:
    p = TextPrinter()
    assert p.result(success("   ")) == ""
    assert p.finish() == "   \n"


def test_later_results_are_separated_by_a_blank_line() -> None:
    assert run([success("one"), success("two")]) == "one\n\ntwo\n"
    turns = {"subtype": "error_max_turns"}
    assert run([turns, success("two")], max_turns="3") == "Error: Reached max turns (3)\n\ntwo\n"
    # A blank result after one was printed is not printed at all.
    assert run([success("one"), success("")]) == "one\n"
