"""Which shell strings run Claude Code, and how to change one without touching the rest (no I/O).

``ccxctl run 'claude -p hi'`` is a Claude job like ``ccxctl claude hi`` when
its shell string is one of these shapes (and nothing else):

* ``claude ARGS`` or ``/path/to/claude ARGS`` (the basename is ``claude`` or
  the configured ``claude_program``'s),
* behind ``NAME=value`` assignments and/or ``env [NAME=value]...``,
* behind ``cd DIR &&`` (one or more),

where ARGS has ``-p``/``--print`` and no operator follows: a pipe, a
redirection, ``;``, ``||``, ``&``, a subshell, a command or process
substitution or a here-document anywhere in the command makes it a plain shell
job, exactly as before.  Words are never evaluated: a word with an expansion
(``"$PROMPT"``, ``~``, a glob) is kept verbatim and only its position is
known.  Changing a command (:meth:`ShellClaude.rendered`,
:meth:`ShellClaude.with_prompt`) rewrites only the words it must and copies
every other byte of the user's string.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ShellClaude", "Word", "recognise"]

_OPERATOR_CHARS = frozenset("|&;<>()\n")
_BLANKS = frozenset(" \t")
# Unquoted characters that stand for themselves in zsh, bash and sh.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+@%")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_RESUMING = ("--resume", "-r", "--continue", "-c", "--session-id", "--fork-session")
_PRINT = ("-p", "--print")


class _Unsupported(Exception):
    """A construct this recogniser does not follow (command substitution, an open quote)."""


@dataclass(frozen=True)
class Word:
    """One shell word: where it is in the command, and its value when it has no expansion."""

    start: int
    end: int
    value: str | None
    """The word after quote removal; None when the shell would expand something in it."""


@dataclass(frozen=True)
class _Op:
    text: str
    start: int


def _words(command: str) -> list[Word | _Op]:
    """Split ``command`` into words and operators the way a POSIX shell does (no expansion)."""
    out: list[Word | _Op] = []
    i, n = 0, len(command)
    while i < n:
        c = command[i]
        if c in _BLANKS:
            i += 1
        elif c == "\\" and command.startswith("\\\n", i):
            i += 2  # a line continuation between words
        elif c == "#":
            while i < n and command[i] != "\n":
                i += 1
        elif c in _OPERATOR_CHARS:
            two = command[i : i + 2]
            text = two if two in ("&&", "||") else c
            out.append(_Op(text, i))
            i += len(text)
        else:
            word, i = _word(command, i)
            out.append(word)
    return out


def _word(s: str, i: int) -> tuple[Word, int]:
    start, n = i, len(s)
    parts: list[str] = []
    literal = True
    while i < n and s[i] not in _BLANKS and s[i] not in _OPERATOR_CHARS:
        c = s[i]
        if c == "\\":
            if i + 1 >= n:
                raise _Unsupported("a trailing backslash")
            if s[i + 1] != "\n":
                parts.append(s[i + 1])
            i += 2
        elif c == "'":
            end = s.find("'", i + 1)
            if end < 0:
                raise _Unsupported("an open single quote")
            parts.append(s[i + 1 : end])
            i = end + 1
        elif c == '"':
            i, text, plain = _double_quoted(s, i + 1)
            literal = literal and plain
            parts.append(text)
        elif c == "$" and _expands(s, i, quoted=False):
            i = _expansion(s, i)
            literal = False
        elif c == "`":
            raise _Unsupported("command substitution")
        else:
            if c not in _PLAIN or (c == "=" and i == start):  # globs, ~, braces; zsh's =cmd
                literal = False
            parts.append(c)
            i += 1
    return Word(start, i, "".join(parts) if literal else None), i


def _double_quoted(s: str, i: int) -> tuple[int, str, bool]:
    """Scan a double-quoted string from just inside the quote: (index after it, value, no expansion)."""
    out: list[str] = []
    plain = True
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            return i + 1, "".join(out), plain
        if c == "\\" and i + 1 < n and s[i + 1] in '$`"\\\n':
            if s[i + 1] != "\n":
                out.append(s[i + 1])
            i += 2
        elif c == "$" and _expands(s, i, quoted=True):
            i = _expansion(s, i)
            plain = False
        elif c == "`":
            raise _Unsupported("command substitution")
        else:
            out.append(c)
            i += 1
    raise _Unsupported("an open double quote")


def _expands(s: str, i: int, *, quoted: bool) -> bool:
    """The ``$`` at ``i`` starts an expansion (``$ `` or a closing ``$"`` is just a dollar)."""
    nxt = s[i + 1 : i + 2]
    if not nxt:
        return False
    return nxt.isalnum() or nxt in "_{(@*#?$!-" or (not quoted and nxt in "'\"")


def _expansion(s: str, i: int) -> int:
    """Skip a ``$`` expansion that runs no command; the index after it."""
    nxt = s[i + 1 : i + 2]
    if nxt == "(":
        raise _Unsupported("command substitution")
    if nxt == "{":
        end = s.find("}", i + 2)
        if end < 0 or any(q in s[i + 2 : end] for q in "'\"`$\\"):
            raise _Unsupported("a parameter expansion with quotes inside")
        return end + 1
    if nxt == "'":  # $'...' (ANSI-C quoting)
        j = i + 2
        while j < len(s) and s[j] != "'":
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            raise _Unsupported("an open $' quote")
        return j + 1
    if nxt == '"':  # $"..." (locale translation): a double-quoted string
        return _double_quoted(s, i + 2)[0]
    j = i + 1
    while j < len(s) and (s[j].isalnum() or s[j] == "_"):
        j += 1
    if j == i + 1 and nxt and nxt in "@*#?$!-0123456789":
        j += 1
    return j


@dataclass(frozen=True)
class ShellClaude:
    """A recognised shell string that runs ``claude``: its words and what its flags say."""

    command: str
    program: Word
    args: tuple[Word, ...]
    assignments: tuple[Word, ...]
    """``NAME=value`` words in front of the program (after ``env`` too)."""

    def flag(self, name: str) -> Word | None:
        """The value word of ``--name VALUE`` (or the word ``--name=VALUE`` itself)."""
        for i, w in enumerate(self.args):
            if w.value == "--":
                return None
            if w.value == name and i + 1 < len(self.args):
                return self.args[i + 1]
            if w.value is not None and w.value.startswith(name + "="):
                return Word(w.start, w.end, w.value.split("=", 1)[1])
        return None

    def value_of(self, name: str) -> str | None:
        """The literal value of flag ``name`` (None when absent or not literal)."""
        word = self.flag(name)
        return word.value if word is not None else None

    @property
    def output_format(self) -> str | None:
        """``--output-format`` as given (None: not given; the CLI then prints text)."""
        return self.value_of("--output-format")

    @property
    def renders_text(self) -> bool:
        """The CLI would print plain text (no ``--output-format``, or ``text``)."""
        return self.output_format in (None, "text")

    @property
    def resumes(self) -> bool:
        """It resumes or continues a session (a retry would rerun the failed turn)."""
        return any(
            w.value in _RESUMING[:4] or (w.value or "").startswith(("--resume=", "--continue="))
            for w in self.args
        )

    @property
    def own_session(self) -> bool:
        """It resumes, continues, forks or names a session itself: no ``--session-id`` is added."""
        return any(
            w.value in _RESUMING or (w.value or "").startswith(tuple(f + "=" for f in _RESUMING))
            for w in self.args
        )

    def assigned(self, name: str) -> str | None:
        """The literal value an inline ``NAME=value`` gives ``name`` (None: not assigned so)."""
        for w in reversed(self.assignments):
            if w.value is not None and w.value.startswith(name + "="):
                return w.value.split("=", 1)[1]
        return None

    def with_assigned(self, name: str, value: str) -> str | None:
        """The command with its last inline ``name=...`` saying ``value`` (quoted); None if it has none."""
        s = self.command
        for w in reversed(self.assignments):
            if s.startswith(name + "=", w.start):
                return s[: w.start] + name + "=" + shlex.quote(value) + s[w.end :]
        return None

    @property
    def prompt(self) -> Word | None:
        """The prompt argument: the word after ``-p``/``--print`` (after a ``--`` there too)."""
        for i, w in enumerate(self.args):
            if w.value in _PRINT and i + 1 < len(self.args):
                nxt = self.args[i + 1]
                if nxt.value == "--" and i + 2 < len(self.args):
                    return self.args[i + 2]
                if nxt.value is None or not nxt.value.startswith("-"):
                    return nxt
                return None
        return None

    def rendered(self, renderer: list[str], session_id: str | None = None) -> str:
        """The command with ``renderer`` in front of the program, which is asked for stream-json.

        ``renderer`` (unquoted words) runs the program as its child.  A
        ``--output-format text`` the user gave is dropped (the CLI takes the
        last one); ``session_id`` is added as ``--session-id``.  Every other
        byte is the user's.
        """
        s = self.command
        head = " ".join(shlex.quote(w) for w in renderer)
        extra = " --output-format stream-json --verbose"
        if session_id is not None:
            extra += f" --session-id {session_id}"
        drop = self._format_words()
        rest: list[str] = []
        pos = self.program.end
        for w in self.args:
            if w in drop:
                rest.append(s[pos : _blank_start(s, w.start)])
                pos = w.end
        rest.append(s[pos:])
        p = self.program
        return f"{s[: p.start]}{head} {s[p.start : p.end]}{extra}{''.join(rest)}"

    def with_prompt(self, transform: Callable[[str], str]) -> str | None:
        """The command with its prompt word replaced by ``transform(prompt)`` (quoted), or None.

        None when there is no prompt argument or it is not literal (an
        expansion the shell would do).
        """
        word = self.prompt
        if word is None or word.value is None:
            return None
        s = self.command
        return s[: word.start] + shlex.quote(transform(word.value)) + s[word.end :]

    def _format_words(self) -> set[Word]:
        for i, w in enumerate(self.args):
            if w.value == "--":
                break
            if w.value == "--output-format" and i + 1 < len(self.args):
                return {w, self.args[i + 1]}
            if w.value is not None and w.value.startswith("--output-format="):
                return {w}
        return set()


def _blank_start(s: str, i: int) -> int:
    while i > 0 and s[i - 1] in _BLANKS:
        i -= 1
    return i


def recognise(command: str, program: str = "claude") -> ShellClaude | None:
    """The Claude run ``command`` is, or None when it is any other shell string.

    ``program`` is the configured Claude CLI; its basename and ``claude`` are
    recognised, bare or as a path.
    """
    if "claude" not in command and os.path.basename(program) not in command:
        return None  # most commands: no lexing at all
    try:
        tokens = _words(command)
    except _Unsupported:
        return None
    while tokens and isinstance(tokens[-1], _Op) and tokens[-1].text == "\n":
        tokens.pop()
    i = 0
    # cd DIR && ...
    while _is_cd(tokens[i : i + 3]):
        i += 3
    rest = tokens[i:]
    if not all(isinstance(t, Word) for t in rest):
        return None  # a pipe, a redirection, ;, ||, & ... : a plain shell job
    words: list[Word] = [t for t in rest if isinstance(t, Word)]
    assignments: list[Word] = []
    j = 0
    while j < len(words) and _is_assignment(command, words[j]):
        assignments.append(words[j])
        j += 1
    if j < len(words) and words[j].value == "env":
        j += 1
        while j < len(words) and _is_assignment(command, words[j]):
            assignments.append(words[j])
            j += 1
    if j >= len(words):
        return None
    prog = words[j]
    names = {"claude", os.path.basename(program)}
    if prog.value is None or os.path.basename(prog.value) not in names:
        return None
    found = ShellClaude(command, prog, tuple(words[j + 1 :]), tuple(assignments))
    if not any(w.value in _PRINT for w in found.args):
        return None  # interactive: not a job ccxd can watch
    if found.flag("--output-format") is not None and found.output_format is None:
        return None  # a format only the shell knows
    return found


def _is_cd(tokens: list[Word | _Op]) -> bool:
    if len(tokens) < 3:
        return False
    cd, _dir, op = tokens
    return (
        isinstance(cd, Word)
        and cd.value == "cd"
        and isinstance(_dir, Word)
        and isinstance(op, _Op)
        and op.text == "&&"
    )


def _is_assignment(command: str, word: Word) -> bool:
    return _ASSIGNMENT.match(command, word.start, word.end) is not None
