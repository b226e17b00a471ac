#!/usr/bin/env python3
"""Flux submission and status benchmarks (issue 13): run by hand where flux-core is built
(tests/flux/instance.sh build puts it in /opt/flux).

For each sweep size (3 parameterized steps simulate -> post -> check over N points plus a funnel
on check_*: 3N + 1 nodes), in one run:

1. `maestro compile`, then `maestro submit` timed from start to return (the bulk submitter,
   flux-submit.py under `flux python`), on a fresh single-broker instance whose scheduling is
   stopped (`flux queue stop`): the jobs are queued, not run, so the 2 cores measure the
   submission alone. The instance is stopped afterwards.
2. `maestro status` on the queued study (after the instance has caught up), `maestro cancel`,
   and `maestro status` again on the cancelled (inactive) jobs.
3. The baseline, one process per job: the same study submitted by the job-by-job script
   (`flux batch|submit` per node, ids decoded from f58, roots released with one `flux job
   urgency` each), which is what submit.sh did before, rendered by
   FluxBackend.render_submit_job_by_job. At 0.15 s a job it would take 75 minutes for 30,001
   jobs, so it runs on a smaller sweep of the same shape (--baseline-points) unless told
   otherwise; the table gives its measured rate and what that rate means for each size.

Usage:  python3 benchmarks/flux_submit.py [--points 1000,10000] [--baseline-points 100] [--direct] [--work DIR]
(--direct: each size above 1,000 points also with the funnel depending on every parent itself)
Prints a Markdown table (docs/performance.md keeps the numbers measured on the reference machine).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import sweep   # the sweep spec every benchmark measures (benchmarks/sweep.py)

ROOT = Path(__file__).resolve().parents[1]
INSTANCE = ROOT / "tests" / "flux" / "instance.sh"
FLUX_BIN = Path(os.environ.get("FLUX_PREFIX", "/opt/flux")) / "bin"


def sweep_spec(points: int, max_dependencies: int = 0) -> str:
    """The sweep; ``max_dependencies`` sets batch.max_dependencies (0: the default)."""
    limit = f", max_dependencies: {max_dependencies}" if max_dependencies else ""
    return sweep.sweep_spec(points, "bench_flux", f"{{type: flux{limit}}}")


class Instance:
    """A fresh Flux instance with scheduling stopped, for one measurement."""

    def __init__(self, state: Path):
        self.state = state
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
        result = subprocess.run(["bash", str(INSTANCE), "start", str(state)], capture_output=True, text=True,
                                env=env)
        if result.returncode != 0:
            sys.exit(f"cannot start a Flux instance:\n{result.stderr}")
        self.env = dict(env, FLUX_URI=result.stdout.split()[-1], PATH=f"{FLUX_BIN}{os.pathsep}{env['PATH']}")
        self.flux("queue", "stop")

    def flux(self, *args: str) -> str:
        return subprocess.run(["flux", *args], env=self.env, capture_output=True, text=True, check=True).stdout

    def idle(self) -> None:
        """Wait until the instance has listed every job it accepted (job-list catches up)."""
        time.sleep(2)

    def stop(self) -> None:
        subprocess.run(["bash", str(INSTANCE), "stop", str(self.state)], capture_output=True)


def timed(argv: List[str], env: Dict[str, str]) -> Tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return took, result.stdout


def maestro(*args: str) -> List[str]:
    return [sys.executable, "-m", "maestro_compile", *args]


def compile_sweep(work: Path, points: int, name: str, max_dependencies: int = 0) -> Path:
    spec = work / f"{name}.yaml"
    spec.write_text(sweep_spec(points, max_dependencies))
    study = work / name
    took, _ = timed(maestro("compile", str(spec), "-o", str(study)), dict(os.environ))
    print(f"  compiled {3 * points + 1} nodes in {took:.1f} s", file=sys.stderr)
    return study


def direct(work: Path, points: int) -> List[str]:
    """The same submission with the funnel depending on every parent itself (no gather jobs): how
    `maestro submit` worked before batch.max_dependencies."""
    study = compile_sweep(work, points, f"direct_{points}", max_dependencies=10 * points)
    instance = Instance(work / f"instance_direct_{points}")
    try:
        submit, _ = timed(maestro("submit", str(study)), instance.env)
    finally:
        instance.stop()
    print(f"  {3 * points + 1} nodes, funnel on {points} direct dependencies: submit {submit:.1f} s", file=sys.stderr)
    return [f"| {points:,} | {3 * points + 1:,} | `maestro submit`, the funnel's {points:,} dependencies direct "
            f"(no gather jobs) | {submit:.1f} s | as before batch.max_dependencies |"]


def bulk(work: Path, points: int) -> List[str]:
    study = compile_sweep(work, points, f"bulk_{points}")
    nodes = 3 * points + 1
    instance = Instance(work / f"instance_bulk_{points}")
    try:
        submit, out = timed(maestro("submit", str(study)), instance.env)
        jobs = len((study / "jobs.tsv").read_text().splitlines())
        assert jobs == nodes, f"{jobs} jobs in the ledger for {nodes} nodes"
        instance.idle()
        queued = [timed(maestro("status", str(study)), instance.env)[0] for _ in range(2)]
        cancel, _ = timed(maestro("cancel", str(study)), instance.env)
        instance.idle()
        ended = [timed(maestro("status", str(study)), instance.env)[0] for _ in range(2)]
    finally:
        instance.stop()
    print(f"  {nodes} nodes: submit {submit:.1f} s", file=sys.stderr)
    gathers = (study / "flux-plan.jsonl").read_text().count('"gather": ')
    note = f"{nodes / submit:.0f} jobs/s" + (f"; the funnel waits on {gathers} gather jobs" if gathers else "")
    return [f"| {points:,} | {nodes:,} | `maestro submit` (bulk, flux-submit.py) | {submit:.1f} s | {note} |",
            f"| {points:,} | {nodes:,} | `maestro status`, all queued | {queued[0]:.2f}, {queued[1]:.2f} s | "
            f"one job-list request |",
            f"| {points:,} | {nodes:,} | `maestro cancel` | {cancel:.1f} s | |",
            f"| {points:,} | {nodes:,} | `maestro status`, all cancelled | {ended[0]:.2f}, {ended[1]:.2f} s | |"]


def baseline(work: Path, points: int, sizes: List[int]) -> List[str]:
    """The same sweep submitted one `flux batch|submit` process per job."""
    sys.path.insert(0, str(ROOT))
    from maestro_compile.backends.flux import FluxBackend
    from maestro_compile.pipeline import Options, build_study, plan_study
    study_dir = compile_sweep(work, points, f"baseline_{points}")
    backend = FluxBackend()
    study = build_study(Options(spec_path=work / f"baseline_{points}.yaml", out_dir=study_dir,
                                backend="flux"))
    script = study_dir / "submit-job-by-job.sh"
    script.write_text(backend.render_submit_job_by_job(study, plan_study(study, backend)))
    nodes = 3 * points + 1
    instance = Instance(work / f"instance_baseline_{points}")
    try:
        took, _ = timed(["bash", str(script)], instance.env)
        jobs = len((study_dir / "jobs.tsv").read_text().splitlines())
        assert jobs == nodes, f"{jobs} jobs in the ledger for {nodes} nodes"
    finally:
        instance.stop()
    rate = nodes / took
    print(f"  baseline {nodes} nodes: {took:.1f} s", file=sys.stderr)
    rows = [f"| {points:,} | {nodes:,} | baseline: one `flux batch\\|submit` process per job | {took:.1f} s | "
            f"{rate:.1f} jobs/s |"]
    for size in sizes:
        if size != points:
            rows.append(f"| {size:,} | {3 * size + 1:,} | baseline at that rate (not run) | "
                        f"{(3 * size + 1) / rate:.0f} s | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="1000,10000", help="comma-separated sweep sizes")
    parser.add_argument("--baseline-points", type=int, default=100,
                        help="sweep size of the one-process-per-job baseline (0: none)")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--direct", action="store_true",
                        help="also submit each size with the funnel's dependencies direct (no gather jobs)")
    args = parser.parse_args()
    sizes = [int(p) for p in args.points.split(",") if p]
    if subprocess.run(["bash", str(INSTANCE), "build"], capture_output=True).returncode != 0:
        sys.exit("no working Flux: run tests/flux/instance.sh build (root)")
    work = args.work or Path(tempfile.mkdtemp(prefix="flux-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    rows = ["| points | nodes | measurement | time | note |", "|---|---|---|---|---|"]
    try:
        for points in sizes:
            rows += bulk(work, points)
            if args.direct and points > 1000:
                rows += direct(work, points)
        if args.baseline_points:
            rows += baseline(work, args.baseline_points, sizes)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
