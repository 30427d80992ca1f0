"""Output-token limits of Claude models (no I/O).

``CLAUDE_CODE_MAX_OUTPUT_TOKENS`` must stay at or below the model's maximum:
older CLIs reject a larger value, newer ones silently cap it, and either way a
retry that asks for more than the model can give gains nothing.  The table is
the CLI's own (``@anthropic-ai/claude-code`` 2.1.328, per model: the default it
uses when the variable is unset, and the most it accepts).  Models it does not
know get :data:`UNKNOWN_MODEL` — the CLI's own assumption — and the config
setting ``claude_model_max_output_tokens`` adds or overrides entries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, NamedTuple

__all__ = ["MODEL_OUTPUT_LIMITS", "UNKNOWN_MODEL", "OutputLimits", "output_limits"]


class OutputLimits(NamedTuple):
    """A model's output-token limits: the CLI's default and the maximum."""

    default: int
    maximum: int


MODEL_OUTPUT_LIMITS: Final[dict[str, OutputLimits]] = {
    "claude-3-5-haiku": OutputLimits(8192, 8192),
    "claude-3-5-sonnet": OutputLimits(8192, 8192),
    "claude-3-7-sonnet": OutputLimits(32000, 64000),
    "claude-haiku-4-5": OutputLimits(32000, 64000),
    "claude-haiku-5-5": OutputLimits(128000, 128000),
    "claude-sonnet-4": OutputLimits(32000, 64000),
    "claude-sonnet-4-0": OutputLimits(32000, 64000),
    "claude-sonnet-4-5": OutputLimits(32000, 64000),
    "claude-sonnet-4-6": OutputLimits(32000, 128000),
    "claude-sonnet-5": OutputLimits(64000, 128000),
    "claude-sonnet-5-5": OutputLimits(128000, 128000),
    "claude-opus-4": OutputLimits(32000, 32000),
    "claude-opus-4-0": OutputLimits(32000, 32000),
    "claude-opus-4-1": OutputLimits(32000, 32000),
    "claude-opus-4-5": OutputLimits(32000, 64000),
    "claude-opus-4-6": OutputLimits(64000, 128000),
    "claude-opus-4-7": OutputLimits(64000, 128000),
    "claude-opus-4-8": OutputLimits(64000, 128000),
    "claude-opus-5": OutputLimits(64000, 128000),
    "claude-opus-5-5": OutputLimits(128000, 128000),
    "claude-fable-5": OutputLimits(64000, 128000),
    "claude-fable-5-1": OutputLimits(64000, 128000),
    "claude-fable-5-2": OutputLimits(128000, 128000),
    "claude-mythos-5": OutputLimits(64000, 128000),
    "claude-mythos-5-1": OutputLimits(64000, 128000),
    "claude-mythos-5-2": OutputLimits(128000, 128000),
}
"""Canonical model name → limits (dated ids like ``claude-sonnet-4-5-20250929`` map here)."""

UNKNOWN_MODEL: Final = OutputLimits(32000, 32000)
"""For a model not in the table: the CLI defaults to 32000; asking for more is not known to work."""

# Dated and provider spellings: claude-sonnet-4-5-20250929, claude-opus-4-1@20250805,
# anthropic.claude-haiku-4-5-20251001-v1:0, claude-opus-4-6[1m].
_SUFFIX = re.compile(r"(\[[^\]]*\])$|([-@]\d{8})(.*)$|(-v\d+(:\d+)?)$")


def canonical_model(model: str) -> str:
    """``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5`` (provider prefixes dropped too)."""
    name = model.strip().lower()
    if "." in name and "claude" in name:  # anthropic.claude-… (Bedrock)
        name = name[name.index("claude") :]
    previous = None
    while previous != name:
        previous = name
        name = _SUFFIX.sub("", name)
    return name


def output_limits(model: str | None, extra: Mapping[str, int] | None = None) -> OutputLimits:
    """The limits of ``model``; ``extra`` (config) gives maxima that win over the table."""
    if not model:
        return UNKNOWN_MODEL
    name = canonical_model(model)
    if extra:
        for key in (model, name):
            if key in extra:
                found = MODEL_OUTPUT_LIMITS.get(name)
                maximum = extra[key]
                default = min(found.default, maximum) if found else min(UNKNOWN_MODEL.default, maximum)
                return OutputLimits(default, maximum)
    return MODEL_OUTPUT_LIMITS.get(name, UNKNOWN_MODEL)
