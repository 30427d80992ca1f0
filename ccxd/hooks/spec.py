"""One loaded hook (:class:`HookSpec`) and the wrapper hook authors use to set options (:class:`Hook`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ccxd.hooks.context import HookContext, HookResult
from ccxd.hooks.matcher import Matcher
from ccxd.protocol import HookDescription, HookMatch, HookPointName, HookPolicy

__all__ = ["POINTS", "Hook", "HookFunc", "HookSpec"]

POINTS: tuple[HookPointName, ...] = ("pre_execution", "post_execution", "error")

HookFunc = Callable[
    [HookContext], Awaitable[HookResult | dict[str, Any] | None] | HookResult | dict[str, Any] | None
]
"""``async def hook(ctx) -> HookResult | None`` (a plain function runs in a thread)."""


@dataclass
class Hook:
    """A Python hook with options, for a ``HOOKS`` list.

    Example::

        HOOKS = {"pre_execution": [Hook(check, match=HookMatch(kind="shell"), timeout=2)]}

    A bare function in the list is the same as ``Hook(function)``.
    """

    func: HookFunc
    name: str | None = None
    match: HookMatch = field(default_factory=HookMatch)
    timeout: float | None = None
    policy: HookPolicy | None = None


@dataclass
class HookSpec:
    """A hook as the runner uses it: where it came from, what it matches, how it runs."""

    name: str
    point: HookPointName
    kind: Literal["python", "command", "builtin"]
    source: str
    matcher: Matcher
    timeout: float | None = None
    """None: the config's ``hook_timeout``."""
    policy: HookPolicy | None = None
    """None: the default of the point (``hook_policy_<point>``)."""
    func: HookFunc | None = None
    command: str | list[str] | None = None

    def describe(
        self, timeout: float, policy: HookPolicy, loop_blocks: int = 0, disabled: str | None = None
    ) -> HookDescription:
        """The hook as ``hooks.list`` shows it, with the defaults filled in."""
        return HookDescription(
            loop_blocks=loop_blocks,
            disabled=disabled,
            name=self.name,
            point=self.point,
            kind=self.kind,
            source=self.source,
            match=self.matcher.spec,
            timeout=self.timeout if self.timeout is not None else timeout,
            policy=self.policy if self.policy is not None else policy,
        )
