"""Incremental stream-json parsing, without I/O: bytes in, typed events out.

Feed the CLI's stdout in chunks of any size (a line may span many chunks, a
chunk many lines); each complete line becomes one event.  Lines are found by
scanning only the bytes that arrived (the held-back partial line is never
scanned again), so a line of many MiB costs O(size), not O(size²).  A line longer than ``max_line`` is dropped
(reported as :class:`Oversize`) instead of being buffered without bound.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ccxd.protocol.claude_events import (
    ApiRetry,
    Assistant,
    ClaudeEvent,
    Init,
    Oversize,
    RateLimit,
    Result,
    StreamEvent,
    System,
    TextLine,
    Unknown,
    User,
)

__all__ = ["DEFAULT_MAX_LINE", "StreamJsonParser", "parse_line"]

DEFAULT_MAX_LINE = 256 * 1024 * 1024
# Text lines that are not JSON are kept only this long (they are in the job's output anyway).
_TEXT_KEEP = 64 * 1024


class _Head(msgspec.Struct):
    """Just enough of an event to pick its type (decoding skips everything else)."""

    type: Any = None
    subtype: Any = None


_head = msgspec.json.Decoder(_Head)
_any = msgspec.json.Decoder()
_BY_TYPE: dict[str, msgspec.json.Decoder[Any]] = {
    "assistant": msgspec.json.Decoder(Assistant),
    "user": msgspec.json.Decoder(User),
    "result": msgspec.json.Decoder(Result),
    "rate_limit_event": msgspec.json.Decoder(RateLimit),
    "stream_event": msgspec.json.Decoder(StreamEvent),
}
_BY_SUBTYPE: dict[str, msgspec.json.Decoder[Any]] = {
    "init": msgspec.json.Decoder(Init),
    "api_retry": msgspec.json.Decoder(ApiRetry),
}


def _text(line: bytes) -> TextLine:
    return TextLine(text=line[:_TEXT_KEEP].decode("utf-8", "replace"))


def parse_line(line: bytes) -> ClaudeEvent | None:
    """One line (without its newline) as an event; ``None`` for a blank line."""
    line = line.strip()
    if not line:
        return None
    if line[:1] != b"{":
        return _text(line)
    try:
        head = _head.decode(line)
    except msgspec.DecodeError:
        return _text(line)
    kind, subtype = head.type, head.subtype
    decoder = None
    if kind == "system" and isinstance(subtype, str):
        decoder = _BY_SUBTYPE.get(subtype)
    elif isinstance(kind, str):
        decoder = _BY_TYPE.get(kind)
    if decoder is not None:
        try:
            event: ClaudeEvent = decoder.decode(line)
            return event
        except msgspec.DecodeError:
            pass  # a field of a type we did not expect: keep it whole below
    raw = _any.decode(line)
    if kind == "system" and decoder is None:
        return System(
            subtype=subtype if isinstance(subtype, str) else None,
            session_id=raw.get("session_id") if isinstance(raw.get("session_id"), str) else None,
            raw=raw,
        )
    return Unknown(type=kind if isinstance(kind, str) else None, raw=raw)


class StreamJsonParser:
    """Splits bytes into lines and lines into events."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = 0  # > 0 while dropping an oversize line: bytes dropped so far
        self.lines = 0

    def feed(self, data: bytes) -> list[ClaudeEvent]:
        """Events completed by ``data``."""
        out: list[ClaudeEvent] = []
        pos, size = 0, len(data)
        while pos < size:
            nl = data.find(b"\n", pos)
            if self._skipping:
                if nl < 0:
                    self._skipping += size - pos
                    return out
                self._skipping += nl - pos
                out.append(Oversize(bytes=self._skipping))
                self.lines += 1
                self._skipping = 0
                pos = nl + 1
                continue
            if nl < 0:
                self._buf += data[pos:] if pos else data
                if len(self._buf) > self.max_line:
                    self._skipping = len(self._buf)
                    self._buf = bytearray()
                return out
            if self._buf:
                self._buf += data[pos:nl]
                line = bytes(self._buf)
                self._buf = bytearray()
            else:
                line = data[pos:nl]
            pos = nl + 1
            self.lines += 1
            if len(line) > self.max_line:
                out.append(Oversize(bytes=len(line)))
                continue
            event = parse_line(line)
            if event is not None:
                out.append(event)
        return out

    def flush(self) -> list[ClaudeEvent]:
        """At end of stream: the last line if it had no newline."""
        if self._skipping:
            size, self._skipping = self._skipping, 0
            self.lines += 1
            return [Oversize(bytes=size)]
        if not self._buf:
            return []
        line = bytes(self._buf)
        self._buf = bytearray()
        self.lines += 1
        event = parse_line(line)
        return [event] if event is not None else []
