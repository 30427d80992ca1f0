"""Goal 3 (job throughput vs bare asyncio and task-spooler) and goal 4 (``ccxctl run true`` start time)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import ccxctl as ccxctl_pkg
import ccxd
from bench.daemon import BenchDaemon, proc_cpu_seconds
from bench.harness import ROOT, Context, CpuMeter
from bench.report import Row
from bench.stats import interleave, median

__all__ = ["cli_start", "job_throughput"]


def _tsp_run(n: int, slots: int) -> float:
    """Seconds for task-spooler with ``slots`` slots to run ``n`` × ``zsh -c true`` (enqueue to last end)."""
    exe = shutil.which("tsp")
    if exe is None:
        raise RuntimeError("task-spooler (tsp) is not installed (scripts/dev setup installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="ccxd-tsp-"))
    env = dict(os.environ, TS_SOCKET=str(tmp / "ts.sock"), TMPDIR=str(tmp), TS_MAXFINISHED=str(n + 10))
    try:
        subprocess.run([exe, "-S", str(slots)], env=env, check=True, stdout=subprocess.DEVNULL)
        script = f"for i in $(seq {n}); do {exe} zsh -c true >/dev/null; done"
        t0 = time.perf_counter()
        subprocess.run(["sh", "-c", script], env=env, check=True)
        while True:
            listing = subprocess.run([exe], env=env, capture_output=True, text=True, check=True).stdout
            finished = sum(1 for line in listing.splitlines()[1:] if line.split()[1:2] == ["finished"])
            if finished >= n:
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        failed = sum(1 for line in listing.splitlines()[1:] if line.split()[3:4] != ["0"])
        if failed:
            raise RuntimeError(f"{failed} tsp jobs failed")
        return seconds
    finally:
        subprocess.run(
            [exe, "-K"], env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        shutil.rmtree(tmp, ignore_errors=True)


def job_throughput(ctx: Context) -> list[Row]:
    """2,000 ``zsh -c true`` jobs at concurrency 32: ccxd's client library vs asyncio vs tsp."""
    n = ctx.pick(2000, 100)
    conc = 32
    runs = ctx.pick(ctx.runs, 2)
    cpu, client_cpu, peer_cpu = CpuMeter(n, 1000), CpuMeter(n, 1000), CpuMeter(n, 1000)
    with BenchDaemon(ctx.log_dir, name="jobs") as d:

        def ccxd() -> float:
            r = cpu.measure(
                d.pid,
                lambda: ctx.client("jobs-ccxd", str(d.socket), str(n), str(conc), "true", env=d.client_env),
            )
            if r["failures"]:
                raise RuntimeError(f"{r['failures']} ccxd jobs failed")
            client_cpu.add(r["cpu_seconds"])
            return float(n / r["seconds"])

        def bare() -> float:
            r = ctx.client("jobs-asyncio", str(n), str(conc), "zsh", "-c", "true")
            if r["failures"]:
                raise RuntimeError(f"{r['failures']} asyncio jobs failed")
            peer_cpu.add(r["cpu_seconds"])
            return float(n / r["seconds"])

        def tsp() -> float:
            return float(n / _tsp_run(n, conc))

        res = interleave(runs, {"ccxd": ccxd, "asyncio": bare, "tsp": tsp})
    a, b, c = (median(res[k]) for k in ("ccxd", "asyncio", "tsp"))
    common = {
        "case": "3 Job throughput",
        "unit": "jobs/s",
        "value": a,
        "runs": runs,
        "samples": res["ccxd"],
        "cpu": cpu.median,
        "cpu_unit": "ms/job",
        "cpu_samples": cpu.samples,
    }
    metric = f"{n:,} × `zsh -c true`, concurrency {conc}"
    return [
        Row(
            metric=metric,
            peer="asyncio create_subprocess_exec",
            peer_value=b,
            ratio=a / b,
            ratio_label="of asyncio",
            goal=1.0,
            peer_samples=res["asyncio"],
            peer_cpu=peer_cpu.median,
            peer_cpu_samples=peer_cpu.samples,
            note="ccxd: one ccxd.client connection, 32 concurrent `run()` calls, each to job.finished; "
            "asyncio: stdlib loop, stdout/stderr piped like ccxd's; every ccxd job is also recorded in Redis; "
            f"CPU: the daemon's own process vs the asyncio loop's own (the ccxd client's own: "
            f"{client_cpu.median:.2f} ms/job)",
            **common,
        ),
        Row(
            metric=metric,
            peer=f"tsp -S {conc}",
            peer_value=c,
            ratio=a / c,
            ratio_label="×",
            goal=1.5,
            peer_samples=res["tsp"],
            note="tsp: jobs enqueued by a shell loop (one `tsp` client per job), output to files, "
            "timed until its listing shows every job finished",
            **common,
        ),
        Row(
            case="7 CPU per unit",
            metric="daemon CPU per job",
            unit="ms/job",
            value=cpu.median,
            peer="the asyncio loop's own process",
            peer_value=peer_cpu.median,
            ratio=cpu.median / peer_cpu.median if peer_cpu.median else float("nan"),
            ratio_label="×",
            goal=0.25,
            higher_is_better=False,
            goal_on_value=True,
            runs=runs,
            samples=cpu.samples,
            peer_samples=peer_cpu.samples,
            note="the daemon's own process (/proc/PID/stat user + system before and after each round of "
            f"{n:,} jobs), not its shims, the jobs or redis-server",
        ),
    ]


def _installed_ccxctl(where: Path) -> tuple[str, str]:
    """A venv at ``where`` with ccxd and ccxctl laid out as an install has them: (its ccxctl, its python).

    The packages are copied into its site-packages and compiled (pip compiles, the
    .deb's postinst runs compileall); its ``ccxctl`` is the .deb's launcher
    (``packaging/ccxctl-launcher``), pointed at the new venv's interpreter; dependencies
    come from this venv through a path line.  The development install itself is
    no measure: its editable-install hook costs every Python start in the venv
    about 16 ms, ``python -c pass`` included, which hides what ccxctl's own start
    costs (docs/decisions/25-cli-start.md).
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for package in (ccxd, ccxctl_pkg):
        source = Path(package.__path__[0])
        shutil.copytree(source, site / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    (site / "ccxd-bench-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [str(python), "-m", "compileall", "-q", str(site / "ccxd"), str(site / "ccxctl")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    launcher = (ROOT / "packaging" / "ccxctl-launcher").read_text()  # the .deb's ccxctl
    ccxctl = where / "bin" / "ccxctl"
    ccxctl.write_text(f"#!{python}\n{launcher}")
    ccxctl.chmod(0o755)
    return str(ccxctl), str(python)


def cli_start(ctx: Context) -> list[Row]:
    """Median wall time of ``ccxctl run true`` vs ``python3 -c pass``, both as installed."""
    runs = ctx.pick(30, 3)
    # One start costs the daemon about a clock tick (10 ms) of CPU: measured over all rounds at once.
    cpu = CpuMeter(runs, 1000)
    spent = [0.0]

    def run_ccxctl(pid: int, env: dict[str, str]) -> float:
        before = proc_cpu_seconds(pid)
        seconds = ctx.timed([ccxctl, "run", "true"], env=env)
        spent[0] += proc_cpu_seconds(pid) - before
        return seconds * 1000

    with tempfile.TemporaryDirectory(prefix="ccxd-bench-cli-") as tmp:
        ccxctl, python = _installed_ccxctl(Path(tmp) / "venv")
        with BenchDaemon(ctx.log_dir, name="cli") as d:
            env = d.client_env
            ctx.timed([ccxctl, "run", "true"], env=env)  # warm the page cache and the daemon
            res = interleave(
                runs,
                {
                    "ccxctl": lambda: run_ccxctl(d.pid, env),
                    "python": lambda: ctx.timed([python, "-c", "pass"]) * 1000,
                },
            )
    cpu.add(spent[0])
    a, b = median(res["ccxctl"]), median(res["python"])
    return [
        Row(
            case="4 CLI start",
            metric="`ccxctl run true` wall time",
            unit="ms",
            value=a,
            peer="`python3 -c pass`",
            peer_value=b,
            ratio=a / b,
            ratio_label="×",
            goal=2.0,
            higher_is_better=False,
            runs=runs,
            samples=res["ccxctl"],
            peer_samples=res["python"],
            cpu=cpu.median,
            cpu_unit="ms/run",
            cpu_samples=cpu.samples,
            note=(
                "installed as the .deb lays it out (its launcher, compiled, no editable hook), "
                "python3 from the same venv; includes connecting, starting `zsh -c true`, "
                "streaming its end and exiting with its code"
            ),
        )
    ]
