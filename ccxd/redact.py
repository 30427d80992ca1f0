"""Hiding secret-looking values before anything is shown, logged or stored."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REDACTED", "is_secret_name", "redact_env"]

REDACTED: Final = "***"

_SECRET_NAME = re.compile(
    # TOKEN but not TOKENS: CLAUDE_CODE_MAX_OUTPUT_TOKENS is a count, not a credential.
    r"(TOKEN(?!S)|SECRET|PASSW(OR)?D|PASSPHRASE|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH|COOKIE|SESSION_?KEY)",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """True for variable names that usually hold secrets (``ANTHROPIC_API_KEY``, ``GH_TOKEN``)."""
    return bool(_SECRET_NAME.search(name))


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """A copy of ``env`` with secret-looking values replaced by ``***``."""
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in env.items()}
