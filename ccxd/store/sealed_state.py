"""The Claude retry state as Redis holds it: each part sealed with the store key (``integrity.py``).

Whoever else can write to the Redis could otherwise make the next start run a
command as this user (a forged waiting attempt) or hold every Claude job (a
forged block); so only the parts that carry this daemon's MAC are read back.
"""

from __future__ import annotations

import logging

import msgspec

from ccxd.store import integrity
from ccxd.store.ops import ClaudeState, PendingAttempt

__all__ = ["seal_claude_state", "unseal_claude_state"]

log = logging.getLogger("ccxd.store")

_json = msgspec.json.Encoder()
_claude_decoder = msgspec.json.Decoder(ClaudeState)


class _Sealed(msgspec.Struct):
    """A record and its MAC (``integrity.py``); ``body`` is the exact JSON the MAC covers."""

    body: msgspec.Raw
    mac: str = ""


class _Block(msgspec.Struct):
    block_until: float | None
    block_reason: str | None


class _SealedClaudeState(msgspec.Struct, tag="sealed-1"):
    """What ``keys.claude_state`` holds: the usage-limit block and each waiting attempt, sealed."""

    block: _Sealed | None = None
    pending: list[_Sealed] = []


_sealed_decoder = msgspec.json.Decoder(_SealedClaudeState)
_block_decoder = msgspec.json.Decoder(_Block)
_pending_decoder = msgspec.json.Decoder(PendingAttempt)


def _context(node: str, what: str) -> str:
    return f"ccxd claude {what}\0{node}"


def _seal(key: bytes, node: str, what: str, body: bytes) -> _Sealed:
    return _Sealed(msgspec.Raw(body), integrity.seal(key, _context(node, what), body))


def seal_claude_state(key: bytes, node: str, state: ClaudeState) -> bytes:
    """``state`` as stored for ``node``: each part sealed with ``key``."""
    block = None
    if state.block_until is not None:
        block = _seal(key, node, "block", _json.encode(_Block(state.block_until, state.block_reason)))
    pending = [_seal(key, node, "attempt", _json.encode(p)) for p in state.pending]
    return _json.encode(_SealedClaudeState(block=block, pending=pending))


def unseal_claude_state(key: bytes, node: str, raw: bytes) -> ClaudeState:
    """The parts of a stored state whose MAC is this daemon's; each other part is logged and left out."""
    try:
        sealed = _sealed_decoder.decode(raw)
    except msgspec.DecodeError:
        try:
            unsealed = _claude_decoder.decode(raw)
        except msgspec.DecodeError:
            log.warning("the Claude retry state in the store is unreadable: ignored")
            return ClaudeState()
        # The shape of versions before the MAC, or someone who lacks the key.
        sealed = _SealedClaudeState(
            block=_Sealed(msgspec.Raw(b"{}")) if unsealed.block_until is not None else None,
            pending=[_Sealed(msgspec.Raw(_json.encode(p))) for p in unsealed.pending],
        )
    state = ClaudeState()
    if sealed.block is not None:
        body = bytes(sealed.block.body)
        if integrity.verify(key, _context(node, "block"), body, sealed.block.mac):
            try:
                block = _block_decoder.decode(body)
            except msgspec.DecodeError:
                log.warning("the usage-limit block in the store is unreadable: ignored")
            else:
                state.block_until, state.block_reason = block.block_until, block.block_reason
        else:
            log.warning("the usage-limit block in the store has no valid MAC: ignored")
    for item in sealed.pending:
        body = bytes(item.body)
        try:
            attempt: PendingAttempt | None = _pending_decoder.decode(body)
        except msgspec.DecodeError:
            attempt = None
        name = repr(attempt.job_id[:64]) if attempt is not None else "(unreadable)"
        if not integrity.verify(key, _context(node, "attempt"), body, item.mac):
            log.warning("pending attempt %s in the store has no valid MAC: not run", name)
        elif attempt is None:
            log.warning("a pending attempt in the store is unreadable (another version?): not run")
        else:
            state.pending.append(attempt)
    return state
