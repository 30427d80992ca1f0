"""What every ``ccxctl`` command shares: the global options, the daemon connection, errors, options."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from ccxctl.runjob import EX_NOPERM, EX_NOT_RUNNING, env_from, exit_code_for_error, not_running_hint
from ccxctl.runopts import RUN_OPTIONS, TARGET_OPTIONS, Opt, OptionError
from ccxd.client import (
    AccessDenied,
    Client,
    ClientError,
    DaemonNotRunning,
    InvalidAddress,
    RemoteError,
    UntrustedDaemon,
    connect,
)

__all__ = [
    "JsonOpt",
    "Target",
    "fail",
    "parse_env",
    "priority",
    "root_options",
    "target",
    "with_client",
    "with_options",
]

T = TypeVar("T")


class Target:
    """Where the daemon is, from the global options."""

    def __init__(self, socket: str | None, url: str | None, token_file: str | None) -> None:
        self.socket = socket
        self.url = url
        self.token_file = token_file

    async def connect(self) -> Client:
        """Open a client to the daemon."""
        return await connect(self.url or self.socket, token_file=self.token_file)


_OPTIONS = {opt.name: opt for opt in (*RUN_OPTIONS, *TARGET_OPTIONS)}


def _parameter(opt: Opt) -> inspect.Parameter:
    """``opt`` as a typer parameter: its annotation says the type and the spellings."""
    kind: Any = list[opt.type] if opt.many else opt.type  # type: ignore[name-defined]
    default: object = False if opt.type is bool else opt.default
    if default is None:
        kind = kind | None
    hint = Annotated[kind, typer.Option(*opt.flags, help=opt.help, envvar=opt.envvar)]
    return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)


F = TypeVar("F", bound=Callable[..., Any])


def with_options(*names: str) -> Callable[[F], F]:
    """Give a command the options ``names`` of :mod:`ccxctl.runopts`, received in its ``**options``.

    typer reads a command's options from its signature: this one is the
    function's own parameters, then the table's, so the table is the one place
    they are declared (the fast path reads it too).
    """

    def decorate(func: F) -> F:
        own = inspect.signature(func, eval_str=True)
        params = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [_parameter(_OPTIONS[name]) for name in names]
        func.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        func.__annotations__ = {p.name: p.annotation for p in params} | {"return": own.return_annotation}
        return func

    return decorate


JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@with_options(*(opt.name for opt in TARGET_OPTIONS))
def root_options(ctx: typer.Context, **where: str | None) -> None:
    """Control the ccxd supervisor daemon."""
    ctx.obj = Target(where["socket"], where["url"], where["token_file"])


def target(ctx: typer.Context) -> Target:
    """The daemon the global options name."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Target) else Target(None, None, None)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Say ``message`` on stderr; the exit to raise."""
    sys.stderr.write(f"ccxctl: {message}\n")
    return typer.Exit(code)


def with_client(ctx: typer.Context, work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work`` with a client of the daemon; a failure is one line on stderr and its exit code."""

    async def go() -> T:
        client = await target(ctx).connect()
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except InvalidAddress as exc:
        raise fail(str(exc), 2) from None
    except DaemonNotRunning as exc:
        raise fail(not_running_hint(str(exc)), EX_NOT_RUNNING) from None
    except (AccessDenied, UntrustedDaemon) as exc:
        raise fail(str(exc), EX_NOPERM) from None
    except RemoteError as exc:  # params the daemon refused are a usage error, as in `run`
        raise fail(exc.message, exit_code_for_error(exc.code)) from None
    except ClientError as exc:
        raise fail(str(exc)) from None


def priority(text: str) -> str | int:
    """``--priority`` read, or typer's usage error."""
    from ccxctl.runjob import parse_priority

    try:
        return parse_priority(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--priority") from None


def parse_env(values: list[str], files: list[str] | None = None) -> dict[str, str]:
    """``--env`` items over ``--env-file`` files, or typer's usage error."""
    try:
        return env_from(values, files or [], os.environ)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def bad_option(exc: OptionError) -> typer.BadParameter:
    """Typer's usage error for what :func:`ccxctl.runopts.run_options` refused."""
    return typer.BadParameter(str(exc), param_hint=exc.hint)
