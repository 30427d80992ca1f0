"""Built-in ``policy`` pre hook: allow/deny command patterns.

A guard rail against mistakes, not a sandbox: a determined caller can hide a
command from a regular expression (variables, ``eval``, scripts).  Deny patterns
win; when allow patterns are set, a command must match one of them.  The hook
runs after every other pre hook, so it judges the command that will run.
"""

from __future__ import annotations

import re

from ccxd.hooks.context import HookContext, HookResult, command_text

__all__ = ["PolicyHook"]


class PolicyHook:
    """Refuses commands by pattern; build it with :meth:`compile`."""

    __name__ = "policy"

    def __init__(self, allow: list[re.Pattern[str]], deny: list[re.Pattern[str]]) -> None:
        self.allow = allow
        self.deny = deny

    @classmethod
    def compile(cls, allow: list[str], deny: list[str], errors: list[str]) -> PolicyHook:
        """Compile the patterns; invalid ones are reported in ``errors`` and dropped."""

        def each(patterns: list[str], key: str) -> list[re.Pattern[str]]:
            out = []
            for p in patterns:
                try:
                    out.append(re.compile(p))
                except re.error as exc:
                    errors.append(f"{key}: invalid pattern {p!r}: {exc}")
            return out

        return cls(each(allow, "policy_allow"), each(deny, "policy_deny"))

    async def __call__(self, ctx: HookContext) -> HookResult:
        """Block a denied command, or one no allow pattern matches."""
        text = command_text(ctx.command)
        for pattern in self.deny:
            if pattern.search(text):
                return HookResult.deny(f"command matches the deny pattern {pattern.pattern!r}")
        if self.allow and not any(p.search(text) for p in self.allow):
            return HookResult.deny("command matches no allow pattern (policy_allow)")
        return HookResult.allow()
