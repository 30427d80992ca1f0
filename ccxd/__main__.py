"""``ccxd``: run the daemon in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ccxd import __version__

EX_CONFIG = 78
EX_UNAVAILABLE = 69


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ccxd",
        description="Supervisor daemon for shell and Claude Code jobs (runs in the foreground).",
    )
    p.add_argument("--config", type=Path, metavar="PATH", help="config file (TOML)")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective config with the source of each value, then exit",
    )
    p.add_argument(
        "--make-fleet-key",
        type=Path,
        metavar="PATH",
        help="write a new fleet key (as `ccxctl fleet-key PATH`), then exit",
    )
    p.add_argument("--version", action="version", version=f"ccxd {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ccxd`` command."""
    args = _parser().parse_args(argv)
    from ccxd import config as config_mod

    if args.make_fleet_key is not None:  # before the config: a fleet config refuses to load without one
        try:
            config_mod.write_fleet_key(args.make_fleet_key)
        except config_mod.ConfigError as exc:
            print(f"ccxd: {exc}", file=sys.stderr)
            return 1
        print(f"{args.make_fleet_key}: a new fleet key; copy it to every node (mode 0600)")
        return 0
    try:
        loaded = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        print(f"ccxd: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.print_config:
        sys.stdout.write(config_mod.render(loaded))
        return 0

    from ccxd import logs
    from ccxd.daemon import AlreadyRunning, Daemon
    from ccxd.store.base import StoreUnavailable
    from ccxd.store.embedded import RedisMissing

    logs.setup(loaded.config.log_level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    else:
        runner = uvloop.run

    async def serve() -> int:
        return await Daemon(loaded, args.config).run()

    try:
        return int(runner(serve()))
    except RedisMissing as exc:
        print(f"ccxd: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except StoreUnavailable as exc:
        print(f"ccxd: cannot reach the store: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except AlreadyRunning as exc:
        print(f"ccxd: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except PermissionError as exc:
        print(f"ccxd: {exc}", file=sys.stderr)
        return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
