"""The built-in hooks, enabled by name in ``builtin_hooks``: venv, policy, metrics, claude_precheck."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccxd.config import Config
from ccxd.hooks.builtin.claude_precheck import claude_precheck
from ccxd.hooks.builtin.policy import PolicyHook
from ccxd.hooks.builtin.venv import venv_hook
from ccxd.hooks.matcher import Matcher
from ccxd.hooks.registry import BuiltinFactory
from ccxd.hooks.spec import HookFunc, HookSpec
from ccxd.protocol import HookMatch, HookPointName, HookPolicy

if TYPE_CHECKING:
    from ccxd.hooks.builtin.metrics import Metrics

__all__ = ["builtin_factory"]


def _spec(
    name: str,
    point: HookPointName,
    func: HookFunc,
    match: HookMatch | None = None,
    policy: HookPolicy | None = None,
) -> HookSpec:
    return HookSpec(
        name=name,
        point=point,
        kind="builtin",
        source=f"builtin_hooks = [{name!r}]",
        matcher=Matcher(match or HookMatch()),
        policy=policy,
        func=func,
    )


def builtin_factory(metrics: Metrics | None = None) -> BuiltinFactory:
    """The factory the registry calls on every (re)load; ``metrics`` records for the metrics hook."""

    def make(config: Config, errors: list[str]) -> tuple[list[HookSpec], list[HookSpec]]:
        enabled = set(config.builtin_hooks)
        first: list[HookSpec] = []
        last: list[HookSpec] = []
        if "claude_precheck" in enabled:
            # A check that cannot run must not stop Claude jobs: open.
            first.append(
                _spec("claude_precheck", "pre_execution", claude_precheck, HookMatch(kind="claude"), "open")
            )
        if "venv" in enabled:
            first.append(_spec("venv", "pre_execution", venv_hook, policy="open"))
        if "metrics" in enabled:
            if metrics is None:
                errors.append("builtin_hooks: metrics needs the store; not loaded")
            else:
                first.append(_spec("metrics", "post_execution", metrics.post_hook, policy="open"))
                first.append(_spec("metrics", "error", metrics.error_hook, policy="open"))
        if "policy" in enabled:
            if not config.policy_allow and not config.policy_deny:
                errors.append("builtin_hooks: policy is enabled but policy_allow and policy_deny are empty")
            hook = PolicyHook.compile(config.policy_allow, config.policy_deny, errors)
            last.append(_spec("policy", "pre_execution", hook))
        return first, last

    return make
