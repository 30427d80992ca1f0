"""``ccxctl``: the control CLI of the ccxd daemon."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's own, without importing typing: `ccxctl run` starts faster
if TYPE_CHECKING:
    from typing import NoReturn


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``run`` takes a fast path without typer; everything else goes to the app."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:
        from ccxctl.fastpath import parse_run

        opts = parse_run(args[1:])
        if opts is not None:
            from ccxctl.runjob import run_job

            return run_job(opts)
    from ccxctl.app import run_app

    return run_app(args)


def entry() -> NoReturn:
    """The ``ccxctl`` command: :func:`main`, then exit without tearing the interpreter down.

    Tearing down msgspec, typing and the protocol module's classes takes longer than
    the whole job of ``ccxctl run true`` (about 8 ms of 75 here), and nothing is left
    to do by then: output is flushed, the daemon connection is closed.
    """
    code: int | str | None
    try:
        code = main()
    except SystemExit as exc:  # typer and argument errors exit this way
        code = exc.code
    except BrokenPipeError:  # `ccxctl ... | head -1`: the reader left, as with any Unix filter
        code = 141
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a user never gets a traceback; CCXCTL_DEBUG=1 shows it
        if os.environ.get("CCXCTL_DEBUG"):
            raise
        code = f"ccxctl: unexpected error: {type(exc).__name__}: {exc} (CCXCTL_DEBUG=1 shows where)"
    status = code if isinstance(code, int) else (0 if code is None else 1)
    if isinstance(code, str):
        print(code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib is one more import at every start
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(status)


if __name__ == "__main__":
    entry()
