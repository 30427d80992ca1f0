"""The hooks that are loaded now, in the order they run; reloaded on SIGHUP."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ccxd.config import Config
from ccxd.hooks import loader
from ccxd.hooks.spec import POINTS, HookSpec
from ccxd.protocol import HookList, HookPointName, HookPolicy

__all__ = ["BuiltinFactory", "Registry"]

log = logging.getLogger("ccxd.hooks")

BuiltinFactory = Callable[[Config, list[str]], tuple[list[HookSpec], list[HookSpec]]]
"""Config → (built-ins that run first, built-ins that run last), reporting problems in the list."""


class Registry:
    """Loaded hooks by point.

    Order at each point: built-ins (venv, claude pre-check, metrics), config
    ``command_hooks``, files of the hooks directory (by file name), entry points
    (by name), and last the policy built-in, so it judges the final command.
    """

    def __init__(self, config: Config, builtins: BuiltinFactory | None = None) -> None:
        self.config = config
        self.builtins = builtins
        self.by_point: dict[HookPointName, list[HookSpec]] = {p: [] for p in POINTS}
        self.errors: list[str] = []
        self.loaded_at = 0.0
        self._loads = 0
        self.loop_blocks: dict[tuple[HookPointName, str], int] = {}
        """Times each hook blocked the event loop past its timeout (runner.py), since loaded."""
        self.disabled: dict[tuple[HookPointName, str], str] = {}
        """Hooks that no longer run, and why; a reload clears both."""

    def load(self) -> None:
        """(Re)load every hook; problems are logged and kept in :attr:`errors`, never raised."""
        c = self.config
        errors: list[str] = []
        specs: list[HookSpec] = []
        if c.hooks_enabled:
            first, last = self.builtins(c, errors) if self.builtins is not None else ([], [])
            specs += first
            specs += loader.from_command_hooks(c.command_hooks, errors)
            specs += loader.from_hooks_dir(c.resolved_hooks_dir(), errors)
            if c.hooks_entry_points:
                specs += loader.from_entry_points(errors, reload=self._loads > 0)
            specs += last
        by_point: dict[HookPointName, list[HookSpec]] = {p: [] for p in POINTS}
        seen: set[tuple[str, str]] = set()
        for spec in specs:
            key = (spec.point, spec.name)
            if key in seen:
                errors.append(
                    f"{spec.source}: a {spec.point} hook named {spec.name!r} is already loaded; skipped"
                )
                continue
            seen.add(key)
            by_point[spec.point].append(spec)
        self.by_point = by_point
        self.errors = errors
        self.loop_blocks, self.disabled = {}, {}
        self.loaded_at = time.time()
        self._loads += 1
        for problem in errors:
            log.error("hooks: %s", problem)
        counts = ", ".join(f"{len(v)} {k}" for k, v in by_point.items())
        log.info("hooks loaded: %s", counts)

    def at(self, point: HookPointName) -> list[HookSpec]:
        """The hooks of ``point`` that run, in running order."""
        if not self.disabled:
            return self.by_point[point]
        return [s for s in self.by_point[point] if (point, s.name) not in self.disabled]

    def blocked_loop(self, spec: HookSpec, seconds: float) -> tuple[int, bool]:
        """Count one time ``spec`` blocked the event loop; (times so far, disabled now)."""
        key = (spec.point, spec.name)
        times = self.loop_blocks[key] = self.loop_blocks.get(key, 0) + 1
        limit = self.config.hook_block_limit
        if not limit or times < limit or key in self.disabled:
            return times, False
        self.disabled[key] = (
            f"blocked the event loop past its timeout {times} times (the last for {seconds:.1f}s); "
            "fix it and reload"
        )
        log.error("hooks: %s (%s) disabled: %s", spec.name, spec.point, self.disabled[key])
        return times, True

    @property
    def all(self) -> list[HookSpec]:
        """Every loaded hook."""
        return [s for p in POINTS for s in self.by_point[p]]

    def timeout(self, spec: HookSpec) -> float:
        """The hook's timeout, or the config default."""
        return spec.timeout if spec.timeout is not None else self.config.hook_timeout

    def policy(self, spec: HookSpec) -> HookPolicy:
        """The hook's policy, or the default of its point."""
        if spec.policy is not None:
            return spec.policy
        defaults: dict[str, HookPolicy] = {
            "pre_execution": self.config.hook_policy_pre_execution,
            "post_execution": self.config.hook_policy_post_execution,
            "error": self.config.hook_policy_error,
        }
        return defaults[spec.point]

    def describe(self) -> HookList:
        """What ``hooks.list`` answers."""
        return HookList(
            enabled=self.config.hooks_enabled,
            hooks=[
                s.describe(
                    self.timeout(s),
                    self.policy(s),
                    self.loop_blocks.get((s.point, s.name), 0),
                    self.disabled.get((s.point, s.name)),
                )
                for s in self.all
            ],
            errors=list(self.errors),
            loaded_at=self.loaded_at,
        )
