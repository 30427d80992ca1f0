"""Which jobs a hook runs for (no I/O): command regex, job kind, session glob, tags."""

from __future__ import annotations

import fnmatch
import re

from ccxd.hooks.context import HookContext, command_text
from ccxd.protocol import HookMatch

__all__ = ["MatchError", "Matcher"]


class MatchError(ValueError):
    """A matcher that cannot work (an invalid regular expression); the message says which."""


class Matcher:
    """A compiled :class:`~ccxd.protocol.HookMatch`."""

    __slots__ = ("command", "spec")

    def __init__(self, spec: HookMatch) -> None:
        self.spec = spec
        self.command: re.Pattern[str] | None = None
        if spec.command is not None:
            try:
                self.command = re.compile(spec.command)
            except re.error as exc:
                raise MatchError(f"invalid command pattern {spec.command!r}: {exc}") from None

    def matches(self, ctx: HookContext) -> bool:
        """True when every member that is set matches the job."""
        s = self.spec
        if s.kind is not None and ctx.kind != s.kind:
            return False
        if s.session is not None and (ctx.session is None or not fnmatch.fnmatchcase(ctx.session, s.session)):
            return False
        if s.tags and not set(s.tags) & set(ctx.tags):
            return False
        return self.command is None or self.command.search(command_text(ctx.command)) is not None
