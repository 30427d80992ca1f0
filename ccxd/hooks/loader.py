"""Finding hooks: Python files in the hooks directory, installed entry points, config programs.

A hooks file or package declares its hooks cc_executor's way, with a
module-level dict::

    HOOKS = {"pre_execution": [check], "post_execution": [record], "error": [alert]}

Items are functions or :class:`~ccxd.hooks.spec.Hook` objects.  A file that
fails to import or declares nothing usable is reported (``hooks.list``
``errors``) and skipped; the other hooks still load.  So is a hook file, or the
whole hooks directory, that another user owns or may write (:mod:`ccxd.ownership`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import itertools
import logging
import os
import sys
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from ccxd.config import CommandHook
from ccxd.hooks.matcher import Matcher, MatchError
from ccxd.hooks.spec import POINTS, Hook, HookSpec
from ccxd.ownership import unsafe_stat
from ccxd.protocol import HookMatch, HookPointName

__all__ = ["ENTRY_POINT_GROUP", "LoadErrors", "from_command_hooks", "from_entry_points", "from_hooks_dir"]

log = logging.getLogger("ccxd.hooks")

ENTRY_POINT_GROUP = "ccxd.hooks"
"""Installed packages register hooks here: ``[project.entry-points."ccxd.hooks"] name = "pkg.module"``."""

# Older spellings accepted as HOOKS keys.
_POINT_ALIASES: dict[str, HookPointName] = {
    "pre": "pre_execution",
    "pre_execute": "pre_execution",
    "post": "post_execution",
    "post_execute": "post_execution",
    "on_error": "error",
    "errors": "error",
}
_serial = itertools.count()

LoadErrors = list[str]


def from_hooks_dir(directory: Path, errors: LoadErrors) -> list[HookSpec]:
    """Hooks of every ``*.py`` file in ``directory`` (sorted by name; a missing directory is empty)."""
    if not directory.is_dir():
        return []
    unsafe = unsafe_stat(directory.stat())
    if unsafe is not None:
        errors.append(f"{directory}: refusing the hooks directory, {unsafe}; none of its hooks loaded")
        return []
    specs: list[HookSpec] = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith((".", "_")):
            continue
        try:
            module = _import_file(path)
        except _Unsafe as exc:
            errors.append(f"{path}: refusing a hook file {exc}")
            continue
        except BaseException as exc:
            errors.append(f"{path}: cannot import: {type(exc).__name__}: {exc}")
            continue
        specs += _from_hooks_dict(getattr(module, "HOOKS", None), path.stem, str(path), errors)
    return specs


class _Unsafe(Exception):
    """A hook file another user could have written."""


def _import_file(path: Path) -> types.ModuleType:
    # A fresh module each time (never cached in sys.modules), so a reload sees edits.
    # The source is checked and compiled from one open file, never from a bytecode
    # cache, so what runs is what was checked.
    name = f"ccxd_hooks_dir_{next(_serial)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("not a Python file")
    with open(path, "rb") as f:
        unsafe = unsafe_stat(os.fstat(f.fileno()))
        if unsafe is not None:
            raise _Unsafe(unsafe)
        source = f.read()
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - loading the user's hook file
    return module


def from_entry_points(errors: LoadErrors, reload: bool = False) -> list[HookSpec]:
    """Hooks that installed packages register in the ``ccxd.hooks`` entry-point group.

    An entry point names a module with ``HOOKS``, a ``HOOKS`` dict, or a function
    returning one.  With ``reload`` an already imported module is re-executed.
    """
    specs: list[HookSpec] = []
    try:
        found = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    except Exception as exc:  # a broken dist-info must not stop the daemon
        errors.append(f"entry points: {exc}")
        return []
    seen: set[str] = set()
    for ep in found:
        if ep.name in seen:
            continue  # the same distribution on sys.path twice
        seen.add(ep.name)
        source = f"entry point {ep.name} = {ep.value}"
        try:
            if reload and ep.module in sys.modules:
                importlib.reload(sys.modules[ep.module])
            obj: Any = ep.load()
            if inspect.isfunction(obj):
                obj = obj()
            hooks = getattr(obj, "HOOKS", None) if isinstance(obj, types.ModuleType) else obj
        except BaseException as exc:
            errors.append(f"{source}: cannot load: {type(exc).__name__}: {exc}")
            continue
        specs += _from_hooks_dict(hooks, ep.name, source, errors)
    return specs


def _from_hooks_dict(hooks: object, prefix: str, source: str, errors: LoadErrors) -> list[HookSpec]:
    if not isinstance(hooks, Mapping):
        errors.append(f"{source}: no HOOKS dict (found {type(hooks).__name__})")
        return []
    specs: list[HookSpec] = []
    for key, items in hooks.items():
        point = _POINT_ALIASES.get(key, key)
        if point not in POINTS:
            errors.append(f"{source}: unknown hook point {key!r} (known: {', '.join(POINTS)})")
            continue
        if callable(items) or isinstance(items, Hook):
            items = [items]
        if not isinstance(items, Iterable):
            errors.append(f"{source}: HOOKS[{key!r}] must be a list")
            continue
        for item in items:
            try:
                hook = _as_hook(item)
            except (TypeError, msgspec.ValidationError) as exc:
                errors.append(f"{source}: HOOKS[{key!r}] holds {item!r}: {exc}")
                continue
            func_name = getattr(hook.func, "__name__", type(hook.func).__name__)
            try:
                matcher = Matcher(hook.match if isinstance(hook.match, HookMatch) else match_from(hook.match))
            except (MatchError, msgspec.ValidationError) as exc:
                errors.append(f"{source}: {func_name}: {exc}")
                continue
            specs.append(
                HookSpec(
                    name=hook.name or f"{prefix}.{func_name}",
                    point=point,
                    kind="python",
                    source=source,
                    matcher=matcher,
                    timeout=hook.timeout,
                    policy=hook.policy,
                    func=hook.func,
                )
            )
    return specs


def _as_hook(item: object) -> Hook:
    if isinstance(item, Hook):
        return item
    if isinstance(item, Mapping):  # {"hook": fn, "match": {...}, "timeout": 2, "policy": "open"}
        options = dict(item)
        func = options.pop("hook", None) or options.pop("func", None)
        if not callable(func):
            raise TypeError("a hook dict needs a callable under 'hook'")
        return Hook(func, **options)
    if callable(item):
        return Hook(item)
    raise TypeError("not a function, Hook or dict")


def from_command_hooks(entries: Iterable[CommandHook], errors: LoadErrors) -> list[HookSpec]:
    """The ``command_hooks`` of the config."""
    specs = []
    for entry in entries:
        try:
            matcher = Matcher(entry.match)
        except MatchError as exc:
            errors.append(f"command_hooks {entry.name}: {exc}")
            continue
        specs.append(
            HookSpec(
                name=entry.name,
                point=entry.point,
                kind="command",
                source="config command_hooks",
                matcher=matcher,
                timeout=entry.timeout,
                policy=entry.policy,
                command=entry.command,
            )
        )
    return specs


def match_from(value: object) -> HookMatch:
    """A :class:`HookMatch` from a dict (for hook authors who prefer plain data)."""
    return msgspec.convert(value, HookMatch)
