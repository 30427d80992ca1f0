"""Command hooks: a program gets the context as JSON on stdin and answers on stdout.

The convention is Claude Code's own, so its hook scripts can be reused:

* exit 0 — success; stdout is empty or one JSON object (see :func:`interpret`);
* exit 2 — block: the job is refused with stderr as the reason;
* any other exit, a signal, invalid JSON, a missing program — the hook failed
  (its policy decides what that means).

The process runs in its own session, is reaped by the daemon's reaper (the only
``waitid`` in ccxd), and is killed with everything it started when its timeout
expires or when it exits leaving processes behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, NamedTuple

import msgspec

from ccxd.hooks.context import HookResult
from ccxd.proc.reaper import Reaper
from ccxd.proc.spawn import SpawnError, spawn, write_input
from ccxd.proc.tree import ProcessTree

__all__ = ["CommandReply", "HookFailure", "argv_for", "interpret", "run_command"]

_MAX_OUTPUT = 1024 * 1024
_PIPE_LINGER = 0.5


class HookFailure(Exception):
    """The hook did not give a usable answer; the message says why, for people."""


class CommandReply(NamedTuple):
    """How a hook program ended and what it printed."""

    code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool


def argv_for(command: str | list[str]) -> list[str]:
    """``/bin/sh -c STRING`` for a string, the list itself otherwise."""
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


async def run_command(
    command: str | list[str], cwd: str, env: dict[str, str], payload: bytes, timeout: float, reaper: Reaper
) -> CommandReply:
    """Run a hook program until it exits or ``timeout``; :class:`HookFailure` if it cannot start."""
    loop = asyncio.get_running_loop()
    argv = argv_for(command)
    try:
        proc = spawn(argv, cwd, env, with_input=True)
    except SpawnError as exc:
        raise HookFailure(str(exc)) from None
    exited = reaper.watch(proc.pid)
    tree = ProcessTree(f"hook-{proc.pid}", proc.pid, proc.pgid)
    assert proc.stdin is not None
    writer = loop.create_task(write_input(proc.stdin, payload))
    buffers = (bytearray(), bytearray())
    eofs = [loop.create_future(), loop.create_future()]
    for i, fd in enumerate((proc.stdout, proc.stderr)):
        _collect(loop, fd, buffers[i], eofs[i])
    timed_out = False
    try:
        done, _ = await asyncio.wait({exited}, timeout=timeout)
        if not done:
            timed_out = True
        # Whatever the hook left running (or the hook itself) goes now.
        await tree.kill()
        if not exited.done():
            await asyncio.wait({exited}, timeout=2.0)
        await asyncio.wait(eofs, timeout=_PIPE_LINGER)
    finally:
        for fut in eofs:
            if not fut.done():
                fut.cancel()  # closes the pipe
        if not writer.done():
            writer.cancel()
    status = exited.result() if exited.done() and not exited.cancelled() else None
    return CommandReply(
        code=status.code if status is not None else None,
        signal=status.signal if status is not None else None,
        stdout=bytes(buffers[0]),
        stderr=bytes(buffers[1]),
        timed_out=timed_out,
    )


def _collect(loop: asyncio.AbstractEventLoop, fd: int, buf: bytearray, eof: asyncio.Future[None]) -> None:
    def on_readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if len(buf) < _MAX_OUTPUT:
                buf.extend(data[: _MAX_OUTPUT - len(buf)])
            return
        if not eof.done():
            eof.set_result(None)

    def close(_: asyncio.Future[None]) -> None:
        loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    eof.add_done_callback(close)
    loop.add_reader(fd, on_readable)


def _text(data: bytes, limit: int = 2000) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def interpret(reply: CommandReply) -> HookResult:
    """The :class:`HookResult` a finished hook program gave; :class:`HookFailure` if none.

    On exit 0, stdout may be empty (nothing to do) or a JSON object with ccxd's
    members (``block``, ``reason``, ``update``, ``annotations``, ``message``)
    and/or Claude Code's (``decision: "block"`` with ``reason``; ``continue:
    false`` with ``stopReason``; ``hookSpecificOutput.permissionDecision:
    "deny"`` with ``permissionDecisionReason``; ``hookSpecificOutput.updatedInput.command``;
    ``systemMessage``).
    """
    if reply.timed_out:
        raise HookFailure("timed out")  # the runner reports this as a timeout
    if reply.code is None:
        sig = f"killed by signal {reply.signal}" if reply.signal is not None else "did not exit"
        raise HookFailure(sig + (f": {_text(reply.stderr)}" if reply.stderr.strip() else ""))
    if reply.code == 2:
        return HookResult(block=True, reason=_text(reply.stderr) or "blocked by hook (exit code 2)")
    if reply.code != 0:
        detail = _text(reply.stderr) or _text(reply.stdout)
        raise HookFailure(f"exit code {reply.code}" + (f": {detail}" if detail else ""))
    if not reply.stdout.strip():
        return HookResult()
    try:
        data = msgspec.json.decode(reply.stdout)
    except msgspec.DecodeError as exc:
        raise HookFailure(f"invalid JSON on stdout ({exc}): {_text(reply.stdout, 200)!r}") from None
    if not isinstance(data, dict):
        raise HookFailure(f"stdout must be a JSON object, got {type(data).__name__}")
    return from_json_answer(data)


def from_json_answer(data: dict[str, Any]) -> HookResult:
    """Map a hook's JSON answer (ccxd's or Claude Code's members) to a :class:`HookResult`."""
    try:
        result = msgspec.convert(
            {k: data[k] for k in ("block", "reason", "update", "annotations", "message") if k in data},
            HookResult,
        )
    except msgspec.ValidationError as exc:
        raise HookFailure(f"invalid answer: {exc}") from None
    specific = data.get("hookSpecificOutput")
    specific = specific if isinstance(specific, dict) else {}
    if data.get("decision") == "block":
        result.block = True
        result.reason = result.reason or str(data.get("reason") or "blocked by hook")
    if data.get("continue") is False:
        result.block = True
        result.reason = result.reason or str(data.get("stopReason") or "stopped by hook")
    if specific.get("permissionDecision") == "deny":
        result.block = True
        result.reason = result.reason or str(specific.get("permissionDecisionReason") or "denied by hook")
    updated = specific.get("updatedInput")
    if (
        isinstance(updated, dict)
        and isinstance(updated.get("command"), str)
        and "command" not in result.update
    ):
        result.update = {**result.update, "command": updated["command"]}
    if not result.message and isinstance(data.get("systemMessage"), str):
        result.message = data["systemMessage"]
    return result
