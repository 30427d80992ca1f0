"""``ccxctl attach`` and ``ccxctl logs``: a job's output, replayed and live."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import emit_event
from ccxd.client import Client
from ccxd.protocol import (
    JobFinished,
    OutputChunk,
    OutputCut,
    OutputGap,
)

__all__ = ["attach", "logs"]


class _Prefixer:
    """Prefixes each output line with its job id when several jobs share a terminal."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.at_line_start = {"stdout": True, "stderr": True}

    def format(self, stream: str, data: bytes) -> bytes:
        if not self.prefix:
            return data
        out = bytearray()
        for piece in data.splitlines(keepends=True):
            if self.at_line_start[stream]:
                out += self.prefix
            out += piece
            self.at_line_start[stream] = piece.endswith(b"\n")
        return bytes(out)


async def _follow(client: Client, job_id: str, offset: int, prefix: bytes, json_out: bool) -> int:
    fmt = _Prefixer(prefix)
    async for ev in client.follow(job_id, from_offset=offset):
        if json_out:
            emit_event(ev)
        elif isinstance(ev, OutputChunk):
            stream = sys.stdout.buffer if ev.stream == "stdout" else sys.stderr.buffer
            stream.write(fmt.format(ev.stream, ev.raw()))
            stream.flush()
        elif isinstance(ev, OutputGap):
            sys.stderr.write(f"ccxctl: [{job_id}] output {ev.start}-{ev.end} is no longer available\n")
        elif isinstance(ev, OutputCut):
            sys.stderr.write(f"ccxctl: [{job_id}] output was cut at {ev.limit} bytes\n")
        if isinstance(ev, JobFinished):
            from ccxctl.runjob import exit_code_for

            return exit_code_for(ev.job)
    return 1


def attach(
    ctx: typer.Context,
    jobs: Annotated[list[str], typer.Argument(help="Job ids.")],
    from_offset: Annotated[int, typer.Option(help="Resume at this output offset (one job only).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Replay then follow jobs live; with several jobs each line is prefixed by its job."""
    if from_offset and len(jobs) > 1:
        raise typer.BadParameter("--from-offset needs exactly one job")

    async def work(client: Client) -> int:
        codes = await asyncio.gather(
            *(
                _follow(client, j, from_offset, f"[{j}] ".encode() if len(jobs) > 1 else b"", json_out)
                for j in jobs
            )
        )
        return max(codes)

    raise typer.Exit(cli.with_client(ctx, work))


def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following the live output.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Print a job's output so far (stdout to stdout, stderr to stderr)."""

    async def work(client: Client) -> None:
        offset = 0
        while True:
            page = await client.read(job, offset=offset, max_bytes=4 << 20)
            for chunk in page.chunks:
                if json_out:
                    emit_event(chunk)
                else:
                    stream = sys.stdout.buffer if chunk.stream == "stdout" else sys.stderr.buffer
                    stream.write(chunk.raw())
            offset = page.next_offset
            if page.eof or not page.chunks:
                break
        sys.stdout.flush()
        if follow and not page.eof:
            await _follow(client, job, offset, b"", json_out)

    cli.with_client(ctx, work)
