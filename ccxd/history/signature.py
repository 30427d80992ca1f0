"""Command signatures: a command with its volatile parts normalised (no I/O).

Runs of "the same command" are grouped by signature for timeout estimates and
statistics.  Normalisation, in order:

1. leading ``NAME=value`` environment assignments are dropped;
2. quoted strings longer than 24 characters (prompts, messages) become ``<str>``;
3. UUIDs become ``<uuid>``, hex strings of 8+ characters ``<hex>``;
4. paths under /tmp, /var/tmp and /dev/shm become ``<tmp>``;
5. ISO dates and times become ``<date>``/``<time>``, other numbers ``<n>``;
6. runs of white space become one space; the result is cut to 200 characters.

So ``sleep 5`` and ``sleep 10`` share ``sleep <n>``, and ``claude -p "…"`` with
different prompts share ``claude -p <str>``.
"""

from __future__ import annotations

import functools
import re

__all__ = ["signature"]

_ENV_PREFIX = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=(?:'[^']*'|\"[^\"]*\"|\S*)\s+)+")
_LONG_QUOTED = re.compile(r"'[^']{25,}'|\"(?:[^\"\\]|\\.){25,}\"")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}\b")
_TMP = re.compile(r"(?:/tmp|/var/tmp|/dev/shm)/\S*")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_TIME = re.compile(r"\b\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\b")
_NUMBER = re.compile(r"(?<![A-Za-z_])\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")

MAX_LENGTH = 200


def signature(command: str | list[str]) -> str:
    """The signature of ``command`` (a shell string or an argv list)."""
    return _signature(command if isinstance(command, str) else " ".join(_quote(a) for a in command))


@functools.lru_cache(maxsize=1024)
def _signature(text: str) -> str:
    # Cached: automation runs the same commands over and over, and every job's end
    # asks for its signature (nine regular expressions, about 10 us).
    text = _ENV_PREFIX.sub("", text.strip())
    text = _LONG_QUOTED.sub("<str>", text)
    text = _UUID.sub("<uuid>", text)
    text = _HEX.sub("<hex>", text)
    text = _TMP.sub("<tmp>", text)
    text = _DATE.sub("<date>", text)
    text = _TIME.sub("<time>", text)
    text = _NUMBER.sub("<n>", text)
    text = _SPACE.sub(" ", text).strip()
    return text[:MAX_LENGTH]


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg
