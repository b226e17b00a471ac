#!/usr/bin/env python3
"""Slurm submission benchmarks (issue 3): run by hand on a machine with a Slurm cluster.

1. Makespan of a 10-step chain of trivial jobs: submitted by maestro_compile, and the same chain
   written by hand as a bash loop of `sbatch --parsable --dependency=afterok:$prev` (the floor).
   Both are run in the same invocation, interleaved round by round, and the ratio of the medians
   is printed.
2. A 10,000-point sweep (3 parameterized steps + a funnel): compile time, `maestro submit` time and
   the number of sbatch calls (counted by a wrapper put first on PATH), then `maestro status` on
   the queued study and again after `maestro cancel`, timed, with its sacct/squeue calls counted.
   The jobs are cancelled, not run.

Usage:  python3 benchmarks/slurm_submit.py [--rounds 3] [--chain 10] [--points 10000] [--sweep-only]
Prints a Markdown table (docs/performance.md keeps the numbers measured on the reference machine).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Sequence

import sweep   # the sweep spec every benchmark measures (benchmarks/sweep.py)

DONE_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")


def maestro(*args: str, env: Dict[str, str] = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "maestro_compile", *args], capture_output=True, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"maestro {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def chain_spec(steps: int) -> str:
    lines = ["description: {name: bench_chain, description: a chain of trivial jobs}",
             "batch: {type: slurm}", "study:"]
    for i in range(steps):
        lines += [f"  - name: s{i}", f"    description: link {i}", "    run:", "      cmd: 'true'"]
        if i:
            lines.append(f"      depends: [s{i - 1}]")
    return "\n".join(lines) + "\n"


def sweep_spec(points: int) -> str:
    return sweep.sweep_spec(points, "bench_sweep", "{type: slurm}")


def wait_done(ids: Sequence[str], timeout: float = 600) -> float:
    """Wait until sacct shows every job ended; return the latest End (epoch seconds)."""
    env = dict(os.environ, SLURM_TIME_FORMAT="%s")
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["sacct", "-X", "-P", "-n", "-j", ",".join(ids), "--format=JobID,State,End"],
                             capture_output=True, text=True, env=env).stdout
        rows = [line.split("|") for line in out.splitlines() if line.strip()]
        if len(rows) >= len(ids) and all(r[1].split()[0] in DONE_STATES for r in rows):
            bad = [r for r in rows if r[1] != "COMPLETED"]
            if bad:
                sys.exit(f"jobs did not complete: {bad}")
            return max(float(r[2]) for r in rows)
        time.sleep(0.5)
    sys.exit(f"timed out waiting for jobs {ids}")


def run_ours(work: Path, spec: Path, round_no: int) -> float:
    study = work / f"ours_{round_no}"
    maestro("compile", str(spec), "-o", str(study), "--backend", "slurm")
    start = time.time()
    maestro("submit", str(study))
    ids = [line.split("\t")[2] for line in (study / "jobs.tsv").read_text().splitlines()]
    return wait_done(ids) - start


def run_floor(work: Path, steps: int, round_no: int) -> float:
    """The same chain by hand: one script per link, each sbatch waiting on the previous id."""
    folder = work / f"floor_{round_no}"
    folder.mkdir()
    for i in range(steps):
        (folder / f"s{i}.sh").write_text(f"#!/bin/bash\n#SBATCH --job-name=s{i} --output=s{i}.out\ntrue\n")
    loop = textwrap.dedent(f"""\
        prev=
        for i in $(seq 0 {steps - 1}); do
            prev=$(sbatch --parsable ${{prev:+--dependency=afterok:$prev}} s$i.sh) || exit 1
            echo "$prev"
        done
        """)
    start = time.time()
    out = subprocess.run(["bash", "-c", loop], cwd=folder, capture_output=True, text=True, check=True).stdout
    return wait_done(out.split()) - start


def chain_benchmark(work: Path, steps: int, rounds: int) -> List[str]:
    spec = work / "chain.yaml"
    spec.write_text(chain_spec(steps))
    ours, floor = [], []
    for round_no in range(rounds):
        floor.append(run_floor(work, steps, round_no))
        ours.append(run_ours(work, spec, round_no))
        print(f"round {round_no + 1}: floor {floor[-1]:.1f} s, maestro_compile {ours[-1]:.1f} s", file=sys.stderr)
    ratio = statistics.median(ours) / statistics.median(floor)
    return [f"| {steps}-step chain makespan, hand-written sbatch chain (floor) | "
            f"{', '.join(f'{t:.1f}' for t in floor)} s | median {statistics.median(floor):.1f} s |",
            f"| {steps}-step chain makespan, maestro_compile | "
            f"{', '.join(f'{t:.1f}' for t in ours)} s | median {statistics.median(ours):.1f} s, "
            f"ratio **{ratio:.2f}** |"]


def sweep_benchmark(work: Path, points: int) -> List[str]:
    spec = work / "sweep.yaml"
    spec.write_text(sweep_spec(points))
    study = work / "sweep"
    start = time.time()
    maestro("compile", str(spec), "-o", str(study), "--backend", "slurm")
    compile_seconds = time.time() - start

    # count scheduler calls with wrappers first on PATH
    shim = work / "shim"
    shim.mkdir()
    for command in ("sbatch", "sacct", "squeue"):
        real = shutil.which(command)
        (shim / command).write_text(f'#!/bin/bash\necho x >> "{work / command}.calls"\nexec "{real}" "$@"\n')
        (shim / command).chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ['PATH']}")
    # Nothing may run during the measurement: on this machine the jobs would share the 2 cores
    # with `maestro status` (on a cluster they run elsewhere). The nodes are drained meanwhile.
    nodes = subprocess.run(["sinfo", "-h", "-o", "%N"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["scontrol", "update", f"NodeName={nodes}", "State=DRAIN", "Reason=benchmark"], check=True)
    try:
        start = time.time()
        maestro("submit", str(study), env=env)
        submit_seconds = time.time() - start
        queued = status_row(study, env, work, "queued (nothing running)")
        maestro("cancel", str(study))
    finally:
        subprocess.run(["scontrol", "update", f"NodeName={nodes}", "State=RESUME"], check=True)
    time.sleep(2)   # let accounting record the cancellation
    cancelled = status_row(study, env, work, "cancelled")
    nodes = len((study / "jobs.tsv").read_text().splitlines())
    sbatch_calls = len((work / "sbatch.calls").read_text().splitlines())
    return [f"| {points}-point sweep (3 steps + funnel, {nodes} nodes): compile | {compile_seconds:.1f} s | |",
            f"| {points}-point sweep: `maestro submit` | {submit_seconds:.1f} s | {sbatch_calls} sbatch calls |",
            queued, cancelled]


def status_row(study: Path, env: Dict[str, str], work: Path, when: str) -> str:
    """Time `maestro status` on the submitted sweep and count its sacct/squeue calls."""
    for command in ("sacct", "squeue"):
        (work / f"{command}.calls").write_text("")
    start = time.time()
    out = maestro("status", str(study), env=env).stdout
    seconds = time.time() - start
    calls = {c: len((work / f"{c}.calls").read_text().splitlines()) for c in ("sacct", "squeue")}
    return (f"| `maestro status` on the sweep, {when} | {seconds:.2f} s | {calls['sacct']} sacct + "
            f"{calls['squeue']} squeue calls; {out.strip().splitlines()[-1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chain", type=int, default=10)
    parser.add_argument("--points", type=int, default=10000)
    parser.add_argument("--sweep-only", action="store_true", help="skip the chain makespan rounds")
    args = parser.parse_args()
    if not shutil.which("sbatch"):
        sys.exit("sbatch not found: run this on a Slurm cluster (tests/slurm/cluster.sh up starts a test one)")
    with tempfile.TemporaryDirectory(prefix="maestro-bench-") as tmp:
        work = Path(tmp)
        rows = [] if args.sweep_only else chain_benchmark(work, args.chain, args.rounds)
        rows += sweep_benchmark(work, args.points)
    print("| measurement | values | summary |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
