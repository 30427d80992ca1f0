"""JSON through CPython's C accelerator, without importing :mod:`json` (no I/O).

:mod:`json` imports :mod:`re`, and with it :mod:`enum`: several milliseconds at
every start of ``ccxctl run``, for regular expressions its C accelerator never
uses.  :func:`loads` reads what ``json.loads`` reads; :func:`dumps` writes what
``json.dumps(value, separators=(",", ":"))`` writes, except that a float that is
not finite is ``null``, as msgspec (the daemon's side) writes it.  Where the
accelerator is missing (another Python), both are :mod:`json`'s own.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["dumps", "loads"]

_SPACE = " \t\n\r"  # JSON's whitespace


def _constant(name: str) -> float:
    return float(name.replace("Infinity", "inf"))  # NaN, Infinity, -Infinity


class _Settings:
    """What the C scanner reads off a ``json.JSONDecoder``: ``json.loads``'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)


_scan: Callable[[str, int], tuple[Any, int]] | None
try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner

    _scan = make_scanner(_Settings())  # type: ignore[arg-type]  # it reads only these attributes
except (ImportError, AttributeError, TypeError):  # not CPython: json's own
    _scan = None


def loads(data: bytes | bytearray | str) -> Any:
    """The value of one JSON text; ValueError (or UnicodeDecodeError) when it is none."""
    if _scan is None:
        import json

        return json.loads(data)
    text = data if isinstance(data, str) else data.decode()
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise ValueError(f"no JSON value at character {start}") from None
    if text[end:].strip(_SPACE):
        raise ValueError(f"extra data at character {end}")
    return value


def dumps(value: object) -> str:
    """``value`` (dicts with str keys, lists, tuples, str, int, float, bool, None) as compact ASCII JSON."""
    if _scan is None:
        import json

        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return str(_quote(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        finite = value == value and value not in (float("inf"), float("-inf"))
        return float.__repr__(value) if finite else "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join([dumps(item) for item in value]) + "]"
    if isinstance(value, dict):
        return "{" + ",".join([f"{_quote(key)}:{dumps(item)}" for key, item in value.items()]) + "}"
    raise TypeError(f"a {type(value).__name__} is not JSON")
