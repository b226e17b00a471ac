#!/usr/bin/env python3
"""Compile benchmark (issue 5): maestro_compile vs maestrowf's dry run vs a bare file-writing floor.

For each sweep size the same spec (3 parameterized steps + a funnel, Slurm batch block) is
given to three programs, run one after the other in the same round, in a rotating order:

- maestrowf 1.2.1 `maestro run --dry -fg -y -o OUT spec.yaml`, installed by this script into a
  separate virtual environment (--venv) with pip;
- `maestro compile spec.yaml -o OUT --max-array-size 100001` (maestro_compile, this checkout's
  interpreter; the array size is given so that no scheduler is asked), with its default worker
  processes and again with MAESTRO_COMPILE_WORKERS=1 (one process, like the floor);
- the floor: a bare Python loop that creates the same directory tree and writes the same
  number of files of the same sizes as maestro_compile's study directory (the list is taken
  from maestro_compile's output of the first round).

Each run is a child process; wall time is measured around it and peak memory is its maximum
resident set size from wait4(2) (what `/usr/bin/time -v` reports). Output directories are
removed between runs (not timed), after an fsync of the file system, so that one run's
write-back does not land in the next one's time.

With --baseline DIR (another checkout, e.g. `git archive <commit> | tar -x -C DIR`), that version's
`maestro compile` is measured in the same rounds too.

Usage:
  python3 benchmarks/compile_scale.py [--points 1000,10000,100000] [--rounds 3]
                                      [--maestrowf-max 10000] [--venv DIR] [--work DIR] [--baseline DIR]
Prints a Markdown table; docs/performance.md keeps the numbers of the reference machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import sweep   # the sweep spec every benchmark measures (benchmarks/sweep.py)

MAESTROWF = "maestrowf==1.2.1"

FLOOR = r'''
import os, sys
listing, root = sys.argv[1], sys.argv[2]
made = set()
with open(listing) as entries:
    for line in entries:
        relpath, size = line.rstrip("\n").rsplit("\t", 1)
        target = os.path.join(root, relpath)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(target, "w") as handle:
            handle.write("#" * int(size))
'''


def sweep_spec(points: int) -> str:
    """host/bank/queue: maestrowf's Slurm adapter requires them even for a dry run."""
    return sweep.sweep_spec(points, "bench_sweep", "{type: slurm, host: cluster, bank: guests, queue: debug}",
                            walltime="00:10:00")


def ensure_maestrowf(venv: Path) -> Path:
    program = venv / "bin" / "maestro"
    if not program.exists():
        print(f"installing {MAESTROWF} into {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", MAESTROWF], check=True)
    return program


CHECKOUT = Path(__file__).resolve().parent.parent


def checkout_environment(checkout: Path = CHECKOUT) -> Dict[str, str]:
    """The checkout first on the path, its bytecode compiled beforehand (as an installed package
    has it: with PYTHONDONTWRITEBYTECODE set, every run would compile the sources again)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(checkout / "maestro_compile")], check=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH")]))
    return env


def measure(argv: List[str], cwd: Path, env: Optional[Dict[str, str]] = None) -> Tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process; exits on failure."""
    os.sync()
    with tempfile.TemporaryFile() as log:   # a file, not a pipe: maestrowf logs a lot to stderr
        start = time.perf_counter()
        child = subprocess.Popen(argv, cwd=str(cwd), stdout=log, stderr=log, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            log.seek(0)
            sys.exit(f"{' '.join(argv)} exited {child.returncode}:\n{log.read().decode(errors='replace')[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def listing_of(tree: Path, out: Path) -> int:
    """Write 'relpath<TAB>size' of every file under tree (the floor's input) in the order the files
    were created (inode numbers grow with creation on ext4/xfs/tmpfs; creation order decides how
    much of the disk the directory updates touch). Return the number of files."""
    entries = []
    for folder, _, names in os.walk(tree):
        for name in names:
            path = os.path.join(folder, name)
            info = os.stat(path)
            entries.append((info.st_ino, os.path.relpath(path, tree), info.st_size))
    with open(out, "w") as handle:
        for _, relpath, size in sorted(entries):
            handle.write(f"{relpath}\t{size}\n")
    return len(entries)


def bench_size(points: int, rounds: int, work: Path, maestrowf: Optional[Path],
               baseline: Optional[Path] = None) -> List[Dict]:
    spec = work / f"sweep_{points}.yaml"
    spec.write_text(sweep_spec(points))
    listing = work / f"listing_{points}.tsv"
    programs = {
        "maestro_compile": lambda out: [sys.executable, "-m", "maestro_compile", "compile", str(spec),
                                        "-o", str(out), "--max-array-size", "100001"],
        "maestro_compile, 1 process": lambda out: ["env", "MAESTRO_COMPILE_WORKERS=1", sys.executable, "-m",
                                                   "maestro_compile", "compile", str(spec), "-o", str(out),
                                                   "--max-array-size", "100001"],
        "floor": lambda out: [sys.executable, "-c", FLOOR, str(listing), str(out)],
    }
    if maestrowf:
        programs["maestrowf"] = lambda out: [str(maestrowf), "run", "--dry", "-fg", "-y", "-o", str(out), str(spec)]
    ours = checkout_environment()
    environments = {name: ours for name in programs}
    if baseline:   # an earlier version, the same command lines
        environments["maestro_compile (baseline)"] = checkout_environment(baseline)
        programs["maestro_compile (baseline)"] = programs["maestro_compile"]
    results: Dict[str, List[Tuple[float, float]]] = {name: [] for name in programs}
    files = 0
    for round_no in range(rounds):
        names = list(programs)
        if round_no == 0:   # the floor needs maestro_compile's tree first
            names.remove("maestro_compile")
            names.insert(0, "maestro_compile")
        else:
            shift = round_no % len(names)
            names = names[shift:] + names[:shift]
        for name in names:
            out = work / f"out_{name}_{points}"
            results[name].append(measure(programs[name](out), work, environments[name]))
            if name == "maestro_compile" and round_no == 0:   # (first in round 1, see above)
                files = listing_of(out, listing)
            shutil.rmtree(out)
            print(f"{points} points, round {round_no + 1}: {name} {results[name][-1][0]:.2f} s, "
                  f"{results[name][-1][1]:.0f} MB", file=sys.stderr)
    rows = []
    for name, runs in results.items():
        rows.append({"points": points, "nodes": 3 * points + 1, "files": files, "program": name,
                     "times": [t for t, _ in runs], "seconds": statistics.median(t for t, _ in runs),
                     "peak_mb": max(m for _, m in runs)})
    return rows


def table(rows: List[Dict]) -> str:
    lines = ["| points | nodes | program | wall time per round (s) | median (s) | peak RSS (MB) "
             "| vs floor | maestrowf / this |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        same = {r["program"]: r for r in rows if r["points"] == row["points"]}
        floor = same["floor"]["seconds"]
        speedup = ""
        if row["program"] == "maestro_compile" and "maestrowf" in same:
            speedup = f"**{same['maestrowf']['seconds'] / row['seconds']:.1f}×**"
        lines.append(f"| {row['points']:,} | {row['nodes']:,} | {row['program']} | "
                     f"{', '.join(f'{t:.2f}' for t in row['times'])} | {row['seconds']:.2f} | "
                     f"{row['peak_mb']:.0f} | {row['seconds'] / floor:.2f} | {speedup} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="1000,10000,100000",
                        help="comma-separated sweep sizes (default 1000,10000,100000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--maestrowf-max", type=int, default=10000,
                        help="run maestrowf only up to this many points (0: never)")
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "maestrowf-1.2.1-venv",
                        help="virtual environment for maestrowf (created if missing)")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--baseline", type=Path, help="another checkout of maestro_compile (an earlier "
                        "version, e.g. from `git archive`) measured in the same rounds")
    args = parser.parse_args()
    sizes = [int(p) for p in args.points.split(",")]
    maestrowf = ensure_maestrowf(args.venv) if args.maestrowf_max and min(sizes) <= args.maestrowf_max else None
    work = args.work or Path(tempfile.mkdtemp(prefix="maestro-compile-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: List[Dict] = []
    try:
        for points in sizes:
            use = maestrowf if maestrowf and points <= args.maestrowf_max else None
            rows += bench_size(points, args.rounds, work, use, args.baseline and args.baseline.resolve())
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))


if __name__ == "__main__":
    main()
