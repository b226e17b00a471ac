#!/usr/bin/env python3
"""Local backend benchmark (issue 15): the study's own runner against a bare `xargs -P` floor.

For each sweep size the same spec (3 parameterized steps of trivial commands + a funnel: 3N + 1
nodes, local backend) is compiled by this checkout, then run in two ways, one after the other in
the same round, in a rotating order:

- runner: `bash submit.sh --foreground --jobs J` (the study's runner: dependency order, at most J
  steps at once, a ledger line per start, each step's output in <log>.out/.err);
- floor: the same node scripts run wave by wave (a wave: the nodes whose parents are all in
  earlier waves) by `xargs -P J -n 1`, each script started by xargs with its output thrown away
  (xargs runs the scripts' #! interpreter with the script). It does the least that runs the same
  scripts in a dependency order: no ledger, no .out/.err files, no bookkeeping, and each wave
  waits for the slowest script of the previous one.

Both run a freshly compiled copy of the study (the scripts hold the study's absolute path, so a
copy cannot be reused; compiling is not timed) and must leave every node with EXIT_CODE=0. Wall
time is measured around each run; the load average of the machine is printed with each run,
since the two cores are shared.

With --baseline DIR (another checkout, e.g. `git archive <commit> | tar -x -C DIR`), that version's
runner and the floor running that version's step scripts are measured in the same rounds too; its
rows are compared with its own floor.

Usage:
  python3 benchmarks/local_run.py [--points 1000] [--rounds 3] [--jobs 2] [--work DIR] [--baseline DIR]
  python3 benchmarks/local_run.py --points 10000 --rounds 1      # 30,001 nodes: the linearity check
Prints a Markdown table; docs/performance.md keeps the numbers of the reference machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import sweep   # the sweep spec every benchmark measures (benchmarks/sweep.py)

CHECKOUT = Path(__file__).resolve().parent.parent


def sweep_spec(points: int) -> str:
    return sweep.sweep_spec(points, "bench_local", "{type: local}")


def environment(checkout: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH")]))
    return env


def compile_study(spec: Path, study: Path, checkout: Path) -> None:
    if study.exists():
        shutil.rmtree(study)
    # run from the scratch directory: `python -m` puts the current directory first on the path
    subprocess.run([sys.executable, "-m", "maestro_compile", "compile", str(spec), "-o", str(study)],
                   check=True, stdout=subprocess.DEVNULL, env=environment(checkout), cwd=str(spec.parent))


def waves(study: Path) -> List[List[str]]:
    """The nodes' scripts (absolute paths) by wave: a node's wave is one more than its parents'."""
    nodes = json.loads((study / "study.json").read_text())["nodes"]
    level: Dict[str, int] = {}
    for name, entry in nodes.items():   # study.json lists parents before children
        level[name] = 1 + max((level[parent] for parent in entry["depends"]), default=-1)
    by_wave: List[List[str]] = [[] for _ in range(max(level.values()) + 1)]
    for name, entry in nodes.items():
        by_wave[level[name]].append(str(study / entry["script"]))
    return by_wave


def run_runner(study: Path, jobs: int) -> float:
    start = time.perf_counter()
    with open(study.parent / "runner.out", "w") as log:
        subprocess.run(["bash", str(study / "submit.sh"), "--foreground", "--jobs", str(jobs)], check=True,
                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_floor(study: Path, jobs: int) -> float:
    lists = []
    for number, scripts in enumerate(waves(study)):
        listing = study.parent / f"wave{number}.txt"
        listing.write_text("".join(f"{script}\n" for script in scripts))
        lists.append(listing)
    # xargs needs a command: the scripts' interpreter from their #! line, which is what the kernel
    # runs when a script is started directly
    interpreter = Path(waves(study)[0][0]).read_text().splitlines()[0][2:].split()
    start = time.perf_counter()
    for listing in lists:
        subprocess.run(["xargs", "-P", str(jobs), "-n", "1", "-a", str(listing), *interpreter], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def check_all_finished(study: Path) -> None:
    nodes = json.loads((study / "study.json").read_text())["nodes"]
    for name, entry in nodes.items():
        markers = (study / (entry["log"] + ".status")).read_text()
        if "EXIT_CODE=0\n" not in markers:
            sys.exit(f"{name} did not finish: {markers!r}")


def bench_size(points: int, rounds: int, jobs: int, work: Path, baseline: Optional[Path]) -> List[Dict]:
    spec = work / f"local_{points}.yaml"
    spec.write_text(sweep_spec(points))
    study = work / f"study_{points}"
    programs = {"runner": (CHECKOUT, run_runner), "floor": (CHECKOUT, run_floor)}
    if baseline:   # another version's scripts: its runner, and the floor running its step scripts
        programs.update({"runner (baseline)": (baseline, run_runner), "floor (baseline)": (baseline, run_floor)})
    results: Dict[str, List[float]] = {name: [] for name in programs}
    for round_no in range(rounds):
        names = list(programs)
        shift = round_no % len(names)
        names = names[shift:] + names[:shift]
        for name in names:
            checkout, run = programs[name]
            compile_study(spec, study, checkout)
            load = os.getloadavg()[0]
            seconds = run(study, jobs)
            check_all_finished(study)
            results[name].append(seconds)
            print(f"{points} points, round {round_no + 1}: {name} {seconds:.2f} s "
                  f"(load average {load:.2f} before, {os.getloadavg()[0]:.2f} after)", file=sys.stderr)
    shutil.rmtree(study, ignore_errors=True)
    return [{"points": points, "nodes": 3 * points + 1, "program": name, "times": times,
             "seconds": statistics.median(times)} for name, times in results.items()]


def table(rows: List[Dict], jobs: int) -> str:
    lines = [f"| points | nodes | program (--jobs {jobs}) | wall time per round (s) | median (s) | ms per node "
             "| vs floor |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        floor_name = "floor (baseline)" if row["program"].endswith("(baseline)") else "floor"
        floor = next(r for r in rows if r["points"] == row["points"] and r["program"] == floor_name)["seconds"]
        lines.append(f"| {row['points']:,} | {row['nodes']:,} | {row['program']} | "
                     f"{', '.join(f'{t:.2f}' for t in row['times'])} | {row['seconds']:.2f} | "
                     f"{1000 * row['seconds'] / row['nodes']:.2f} | {row['seconds'] / floor:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="1000", help="comma-separated sweep sizes (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="steps at once, for both (default 2)")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--baseline", type=Path, help="another checkout of maestro_compile (an earlier "
                        "version, e.g. from `git archive`) measured in the same rounds")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="maestro-local-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: List[Dict] = []
    try:
        for points in (int(p) for p in args.points.split(",")):
            rows += bench_size(points, args.rounds, args.jobs, work, args.baseline and args.baseline.resolve())
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows, args.jobs))


if __name__ == "__main__":
    main()
