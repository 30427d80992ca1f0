"""``bench/run``: run the benchmark cases and write results.md and results.json."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from bench import machine
from bench.cases import registry
from bench.harness import Context
from bench.report import Row, render_markdown, write_results

EPILOG = """\
Each row gives ccxd's median and its peer's, their ratio, the goal's figure in
the worst / median / best round (a goal is met when the median meets it and no
round misses it by more than 10 %), and CPU per unit of work: the daemon's own
process and the peer's (cat, websocketd, the asyncio loop), from /proc/PID/stat
before and after each round.  A run that starts with a 1-minute load average
above 0.5 is flagged "not idle" (and each row whose case started so, with ⚠):
its rates are not comparable with an idle run's.  The goals are issue 25's."""


def main(argv: list[str] | None = None) -> int:
    cases = registry()
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every case briefly (proves the harness; figures are meaningless)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="CASE",
        help=f"run only these cases: {', '.join(cases)} (repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/results"),
        help="directory for results.md, results.json and logs",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=5,
        help="interleaved rounds of every case that compares ccxd with a peer (default 5; the goals are "
        "medians of at least 5); --quick runs 2",
    )
    parser.add_argument("--soak", action="store_true", help="also run the soak test (issue 10)")
    parser.add_argument(
        "--soak-minutes", type=float, default=30.0, help="length of the soak test (default 30)"
    )
    args = parser.parse_args(argv)

    wanted = [name for item in args.only for name in item.split(",") if name]
    unknown = [w for w in wanted if w not in cases]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(cases)}")
    selected = wanted or [c for c in cases if c != "soak"]
    if args.soak and "soak" not in selected:
        selected.append("soak")

    ctx = Context(quick=args.quick, out=args.out, runs=args.runs, soak_minutes=args.soak_minutes)
    info = machine.describe()
    if str(info["ccxd-shim"]).startswith("MISSING"):
        ctx.log(f"WARNING: ccxd-shim {info['ccxd-shim']}: the figures are not those of a default install")
    if not info["idle at start"]:
        ctx.log(
            f"WARNING: the machine is not idle (load {info['load at start']}): rates will not be comparable "
            "with an idle run; the results say so"
        )
    rows: list[Row] = []
    errors: dict[str, str] = {}
    for name in selected:
        ctx.log(f"{name} …")
        t0 = time.monotonic()
        load = machine.load1()
        try:
            got = cases[name](ctx)
        except Exception as exc:
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        for row in got:
            row.load = load
        rows += got
        ctx.log(f"{name} done in {time.monotonic() - t0:.1f}s")
        write_results(args.out, rows, info, args.quick, errors)  # keep partial results
    info["load at end"] = machine.loadavg()
    write_results(args.out, rows, info, args.quick, errors)
    print(render_markdown(rows, info, args.quick))
    if errors:
        print(f"failed cases: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
