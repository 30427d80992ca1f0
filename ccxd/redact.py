"""Hiding secret-looking values before anything is shown, logged or stored."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REDACTED", "is_secret_name", "redact_argv", "redact_env", "redact_text", "secret_values"]

REDACTED: Final = "***"

_SECRET_NAME = re.compile(
    # TOKEN but not TOKENS: CLAUDE_CODE_MAX_OUTPUT_TOKENS is a count, not a credential;
    # AUTH but not AUTHOR: GIT_AUTHOR_NAME is a name.
    r"(TOKEN(?!S)|SECRET|PASS|PWD|KEY|_PAT$|WEBHOOK|CREDENTIAL|AUTH(?!OR)|COOKIE)",
    re.IGNORECASE,
)
_NOT_SECRET: Final = frozenset({"PWD", "OLDPWD"})  # directories, whatever the pattern says

_MIN_SECRET: Final = 6
"""Shorter values are not hunted in text: ``true`` or ``1`` would blank half a command line."""

_SECRET_OPTIONS: Final = frozenset(
    {"--password", "--passwd", "--token", "--api-key", "--api_key", "--secret"}
)
_SECRET_TEXT = re.compile(
    # scheme://user:PASSWORD@host
    r"(?P<url>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)(?P<urlpw>[^\s@/'\"]+)(?=@)"
    # --password X, --token=X, --api-key X, --secret X
    r"|(?P<opt>(?<![\w-])--(?:password|passwd|token|api-key|api_key|secret)(?:=|\s+))"
    r"(?P<optval>\"[^\"]*\"|'[^']*'|[^\s'\";&|]+)"
    # NAME=value with a secret-looking NAME (not --name=value: options are the case above)
    r"|(?P<name>(?<![\w$-])[A-Za-z_][A-Za-z0-9_]*)=(?P<nameval>\"[^\"]*\"|'[^']*'|[^\s'\";&|]+)"
)


def is_secret_name(name: str) -> bool:
    """True for variable names that usually hold secrets (``ANTHROPIC_API_KEY``, ``GH_PAT``, ``DB_PASS``)."""
    return name.upper() not in _NOT_SECRET and bool(_SECRET_NAME.search(name))


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """A copy of ``env`` with secret-looking values replaced by ``***``."""
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in env.items()}


def secret_values(env: dict[str, str]) -> frozenset[str]:
    """The values of ``env``'s secret-named variables worth hunting in text (no I/O)."""
    return frozenset(v for k, v in env.items() if len(v) >= _MIN_SECRET and is_secret_name(k))


def _hide(match: re.Match[str]) -> str:
    if match["url"] is not None:
        return match["url"] + REDACTED
    if match["opt"] is not None:
        return match["opt"] + REDACTED
    if is_secret_name(match["name"]):
        return f"{match['name']}={REDACTED}"
    return match[0]


def redact_text(text: str, secrets: frozenset[str] = frozenset()) -> str:
    """``text`` (a command line, an error) as it may be shown, logged or stored (no I/O).

    Every occurrence of a value in ``secrets`` (:func:`secret_values`) becomes
    ``***``, and so do a URL's password (``https://u:***@host``), the value of
    ``--password``, ``--token``, ``--api-key`` and ``--secret``, and of a
    ``NAME=value`` whose NAME looks secret (:func:`is_secret_name`).  Only what is
    kept is redacted, never what a job runs.
    """
    for value in sorted(secrets, key=len, reverse=True):  # a longer secret may hold a shorter one
        if value in text:
            text = text.replace(value, REDACTED)
    return _SECRET_TEXT.sub(_hide, text)


def redact_argv(argv: list[str], secrets: frozenset[str] = frozenset()) -> list[str]:
    """:func:`redact_text` for each word, and the word after ``--password`` and the like (no I/O)."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        out.append(REDACTED if hide_next else redact_text(word, secrets))
        hide_next = word in _SECRET_OPTIONS
    return out
