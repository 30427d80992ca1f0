"""``ccxctl``: the control CLI of the ccxd daemon."""

from __future__ import annotations

import sys


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


if __name__ == "__main__":
    sys.exit(main())
