"""Claude Code's plain-text output, made from its stream-json: the renderer of shell-string Claude jobs.

``claude -p`` in text mode prints nothing until its result, so ccxd could not
see a stall or a hang after the result.  For ``ccxctl run 'claude -p hi'``
ccxd asks the CLI for stream-json and puts this program in front of it
(:meth:`ccxd.claude.shell_command.ShellClaude.rendered`)::

    python -I -S .../textview.py --events FILE -- claude --output-format stream-json --verbose -p hi

It runs the CLI as its child, appends every line of its stdout to ``FILE``
(where the daemon's monitor follows them), writes to its own stdout the
bytes the CLI would have printed in text mode (:class:`TextPrinter`, no I/O),
leaves stdin and stderr to the child, and ends as the child ended (its exit
code, or the same signal; a signal ccxd sends the job reaches the CLI directly).

Only the standard library is used, and the daemon runs it with ``-I -S``: no
directory of the job and no ``PYTHON*`` variable can change what it imports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from typing import Any

__all__ = ["TextPrinter", "main"]

_MAX_TURNS = re.compile(r"^Reached maximum number of turns \((\d+)\)$")


class TextPrinter:
    """What the CLI prints in text mode for each ``result`` event (no I/O).

    Mirrors the CLI's own text printer (2.1.x): each result is printed when
    its turn ends unless it is an empty success; the last result is printed
    at exit if it was not yet; results after the first are separated by a
    blank line.  ``max_turns`` and ``max_budget_usd`` are the run's
    ``--max-turns``/``--max-budget-usd`` (the CLI prints its limits).
    """

    def __init__(self, max_turns: str | None = None, max_budget_usd: str | None = None) -> None:
        self.max_turns = max_turns
        self.max_budget_usd = max_budget_usd
        self.printed = 0
        self.ends_with_newline = True
        self._last: dict[str, Any] | None = None
        self._last_printed: dict[str, Any] | None = None

    def result(self, event: dict[str, Any]) -> str:
        """A ``result`` event arrived: the text to print now (maybe empty)."""
        self._last = event
        if _blank_success(event) or event.get("terminal_reason") == "tool_deferred_unavailable":
            return ""
        return self._print(event)

    def finish(self) -> str:
        """The CLI's stdout ended: the text still to print."""
        last = self._last
        if last is None or last is self._last_printed:
            return ""
        if self.printed and _blank_success(last):
            return ""
        return self._print(last)

    def _print(self, e: dict[str, Any]) -> str:
        subtype = e.get("subtype")
        out: str
        errors = e.get("errors") if isinstance(e.get("errors"), list) else []
        if subtype == "success":
            result = e.get("result")
            text = result if isinstance(result, str) else ""
            out = text if text.endswith("\n") else text + "\n"
        elif subtype == "error_during_execution":
            out = "Execution error"
        elif subtype == "error_max_turns":
            turns = self.max_turns
            if turns is None and errors and isinstance(errors[0], str):
                m = _MAX_TURNS.match(errors[0])
                turns = m.group(1) if m else None
            out = f"Error: Reached max turns ({turns if turns is not None else 'undefined'})"
        elif subtype == "error_max_budget_usd":
            out = f"Error: Exceeded USD budget ({_js_number(self.max_budget_usd)})"
        elif subtype == "error_max_structured_output_retries":
            first = errors[0] if errors and isinstance(errors[0], str) else None
            out = f"Error: {first or 'Failed to provide valid structured output after maximum retries'}"
        else:
            return ""
        sep = "" if self.printed == 0 else "\n" if self.ends_with_newline else "\n\n"
        self._last_printed = e
        self.printed += 1
        self.ends_with_newline = out.endswith("\n")
        return sep + out


def _blank_success(e: dict[str, Any]) -> bool:
    result = e.get("result")
    return e.get("subtype") == "success" and (not isinstance(result, str) or result.strip() == "")


def _js_number(text: str | None) -> str:
    """How JavaScript prints the number ``text`` (``undefined`` when there is none)."""
    if text is None:
        return "undefined"
    try:
        v = float(text)
    except ValueError:
        return "NaN"
    if v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == "--":
            return None
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _utf8(text: str) -> bytes:
    """``text`` as Node writes it: a lone surrogate becomes U+FFFD."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return re.sub("[\ud800-\udfff]", "\ufffd", text).encode()


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass  # nobody reads any more (or the events file's disk is full): keep serving the rest


def main(argv: list[str] | None = None) -> int:
    """``textview.py --events FILE -- PROGRAM ARGS...``: run PROGRAM, print its text."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 4 or args[0] != "--events" or args[2] != "--":
        sys.stderr.write("usage: textview.py --events FILE -- PROGRAM [ARGS...]\n")
        return 2
    events_path, cmd = args[1], args[3:]
    try:
        events = os.open(events_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError:
        events = -1
    try:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    except OSError as exc:
        # As the shell says it: the job fails the way `claude ...` itself would have.
        sys.stderr.write(f"{cmd[0]}: {exc.strerror}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126

    # ccxd signals every process of a job itself: the CLI gets the signal directly, and
    # forwarding it would send it twice. The renderer outlives it to print the CLI's last
    # words, then ends the way the CLI ended.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda _signum, _frame: None)
    printer = TextPrinter(_flag(cmd, "--max-turns"), _flag(cmd, "--max-budget-usd"))
    assert child.stdout is not None
    out = sys.stdout.fileno()
    pending = b""
    while True:
        data = os.read(child.stdout.fileno(), 1 << 16)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _take(line, events, out, printer)
    if pending:
        _take(pending, events, out, printer, newline=False)
    _write(out, _utf8(printer.finish()))
    code = child.wait()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _take(line: bytes, events: int, out: int, printer: TextPrinter, newline: bool = True) -> None:
    if events >= 0:
        _write(events, line + b"\n")
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        if line.strip():  # not stream-json: the CLI said it in any mode
            _write(out, line + (b"\n" if newline else b""))
        return
    if event.get("type") == "result":
        _write(out, _utf8(printer.result(event)))


if __name__ == "__main__":
    sys.exit(main())
