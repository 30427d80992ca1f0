"""JSON-RPC 2.0 decoding and validation (no I/O).

:func:`parse` turns the bytes of one message into calls and immediate error
replies, following the spec for batches and notifications.  Params are decoded
straight into the method's Struct; msgspec's own message, with the path of the
bad field under ``$.params``, becomes the ``-32602`` error text.
"""

from __future__ import annotations

import enum
import re
import typing
from typing import Any

import msgspec
from msgspec import UNSET, Raw, Struct

from ccxd.protocol import (
    LABEL_PATTERN,
    METHODS,
    NODE_NAME_PATTERN,
    SIZE_PATTERN,
    ErrorCode,
    ErrorResponse,
    Request,
    RequestId,
    error,
)

__all__ = ["Call", "Parsed", "decode_params", "in_words", "parse"]


class Call(Struct):
    """One request or notification ready for dispatch."""

    method: str
    params: Raw | None
    id: RequestId
    is_notification: bool


class Parsed(Struct):
    """What one incoming message holds: calls to make and errors to send back."""

    calls: list[Call | ErrorResponse]
    batch: bool


class _IdOnly(Struct):
    id: Any = None


_request_decoder = msgspec.json.Decoder(Request)
_id_decoder = msgspec.json.Decoder(_IdOnly)
_batch_decoder = msgspec.json.Decoder(list[Raw])
_raw_decoder = msgspec.json.Decoder(Raw)
# What follows "`$" in the path msgspec appends to a validation message: fields, indexes, `[...]`.
_PATH_TAIL = re.compile(r"(?:\.\w+|\[(?:\d+|\.\.\.)\])*`")


def _salvage_id(raw: bytes | Raw) -> RequestId:
    try:
        value = _id_decoder.decode(raw).id
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _one(raw: bytes | Raw) -> Call | ErrorResponse:
    try:
        req = _request_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return error(_salvage_id(raw), ErrorCode.INVALID_REQUEST, f"invalid request: {exc}")
    except RecursionError:  # the stack is deeper here than where the message was parsed
        return error(None, ErrorCode.INVALID_REQUEST, "invalid request: JSON is nested too deeply")
    if isinstance(req.id, float):  # pragma: no cover - excluded by the type
        return error(None, ErrorCode.INVALID_REQUEST, "invalid request: id must not be a float")
    notification = req.id is UNSET
    req_id = None if req.id is UNSET else req.id
    params = None if req.params is UNSET else req.params
    return Call(method=req.method, params=params, id=req_id, is_notification=notification)


def parse(raw: bytes) -> Parsed:
    """Split one wire message into calls (a batch gives several)."""
    try:
        # msgspec does not check the UTF-8 of strings until it decodes them into
        # str, where a bad byte raises UnicodeDecodeError: check the whole text once.
        raw.decode("utf-8")
        top: Raw | list[Raw] = (
            _batch_decoder.decode(raw) if raw.lstrip()[:1] == b"[" else _raw_decoder.decode(raw)
        )
    except msgspec.DecodeError as exc:
        return Parsed([error(None, ErrorCode.PARSE_ERROR, f"parse error: {exc}")], batch=False)
    except UnicodeDecodeError as exc:
        return Parsed(
            [error(None, ErrorCode.PARSE_ERROR, f"parse error: invalid UTF-8 at byte {exc.start}")],
            batch=False,
        )
    except RecursionError:
        return Parsed(
            [error(None, ErrorCode.PARSE_ERROR, "parse error: JSON is nested too deeply")], batch=False
        )
    if isinstance(top, list):
        if not top:
            return Parsed(
                [error(None, ErrorCode.INVALID_REQUEST, "invalid request: empty batch")],
                batch=False,
            )
        return Parsed([_one(item) for item in top], batch=True)
    return Parsed([_one(top)], batch=False)


def decode_params(method: str, params: Raw | None) -> Struct:
    """Decode ``params`` for ``method``; raise ValueError with a client-facing message."""
    params_type = METHODS[method][0]
    if params is None:
        raw = b"{}"
    else:
        raw = bytes(params)
        if raw.lstrip()[:1] == b"[":
            raise ValueError("params must be an object (by-name), not an array - at `$.params`")
    try:
        return msgspec.json.decode(raw, type=params_type)
    except RecursionError:
        raise ValueError("params are nested too deeply - at `$.params`") from None
    except msgspec.ValidationError as exc:
        # msgspec ends its message with the path from the params object (" - at `$.x`"),
        # or gives none for the object itself; say where that is in the request.  Only
        # the suffix is rewritten: the message may quote the client's own text.
        message = str(exc)
        text, sep, path = message.rpartition(" - at `key` in `$")
        if sep and _PATH_TAIL.fullmatch(path):  # a dict's key: ``where``'s label names
            text = in_words(text, params_type, raw, "")
            raise ValueError(f"{text} - at a key of `$.params{path}") from None
        text, sep, path = message.rpartition(" - at `$")
        if sep and _PATH_TAIL.fullmatch(path):
            text = in_words(text, params_type, raw, path[:-1])
            raise ValueError(f"{text} - at `$.params{path}") from None
        raise ValueError(f"{message} - at `$.params`") from None


_REGEX = re.compile(r"matching regex '(.*)'$")
_PATTERN_WORDS = {
    SIZE_PATTERN: "a size such as 512M, 2G or 1.5GiB (bytes, or a number with K, M, G or T)",
    LABEL_PATTERN: "a label: 1 to 63 letters, digits, '_', '.' or '-'",
    NODE_NAME_PATTERN: "a node name: a letter or digit, then up to 63 letters, digits, '_', '.' or '-'",
}


def in_words(text: str, params_type: type[Struct], raw: bytes, path: str) -> str:
    """The validation ``text`` for the field at ``path`` (``.memory``), with the value and the form in words.

    A pattern is named in words, an enum lists its values, and the value the
    client sent is quoted (when it is short) so a person sees what was refused.
    """
    match = _REGEX.search(text)
    if match is not None:
        pattern = match.group(1).replace("\\\\", "\\")
        words = _PATTERN_WORDS.get(pattern)
        if words is not None:
            text = text[: match.start()].replace("`str` ", "") + words
    field = path[1:] if _FIELD.fullmatch(path) else None
    if field is not None and text.startswith("Invalid enum value"):
        choices = _choices(params_type, field)
        if choices:
            text += " (one of: " + ", ".join(choices) + ")"
    if field is not None and ", got " not in text and not text.startswith("Invalid enum value"):
        value = _value_of(raw, field)
        if value is not None:
            text += f", got {value}"
    return text


_FIELD = re.compile(r"\.\w+")


def _choices(params_type: type[Struct], field: str) -> list[str]:
    for f in msgspec.structs.fields(params_type):
        if f.name == field:
            return [str(a) for arg in typing.get_args(f.type) or (f.type,) for a in _literal_values(arg)]
    return []


def _literal_values(tp: Any) -> list[object]:
    if typing.get_origin(tp) is typing.Literal:
        return list(typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return [m.value for m in tp]
    return []


def _value_of(raw: bytes, field: str) -> str | None:
    try:
        value = msgspec.json.decode(raw).get(field)
    except (msgspec.DecodeError, RecursionError, AttributeError):
        return None
    shown = msgspec.json.encode(value).decode()
    return shown if len(shown) <= 80 else None
