#!/usr/bin/env python3
"""Bundles on Slurm (issue 16): makespan of one sweep of short steps (3 parameterized steps and a
funnel) compiled one job per node and compiled into bundles under a queue limit, both run to the
end in the same invocation on the same cluster, one after the other; the outputs are compared.

The unbundled study is submitted under an account without a limit (the cluster's default), the
bundled one under --max-queued N (default 50, the test cluster's mcbundle account).

Usage:  python3 benchmarks/slurm_bundles.py [--points 1000] [--seconds 1] [--max-queued 50]
        [--account mcbundle]
Prints a Markdown table (docs/performance.md keeps the numbers measured on the reference machine).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, Optional


def maestro(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "maestro_compile", *args], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"maestro {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def sweep_spec(points: int, seconds: float, account: Optional[str]) -> str:
    bank = f", bank: {account}" if account else ""
    values = ", ".join(str(i) for i in range(points))
    return textwrap.dedent(f"""\
        description: {{name: bench_bundles, description: a {points}-point sweep of {seconds}-second steps}}
        batch: {{type: slurm{bank}}}
        study:
          - name: prepare
            description: one point
            run: {{cmd: 'sleep {seconds}; echo $(X) > out.txt', walltime: "00:05:00"}}
          - name: simulate
            description: one point
            run: {{cmd: 'sleep {seconds}; echo $(( $(cat ../../prepare/X.$(X)/out.txt) * 2 )) > sim.txt',
                  depends: [prepare], walltime: "00:05:00"}}
          - name: analyze
            description: one point
            run: {{cmd: 'sleep {seconds}; echo $(( $(cat ../../simulate/X.$(X)/sim.txt) + 1 )) > ana.txt',
                  depends: [simulate], walltime: "00:05:00"}}
          - name: collect
            description: the funnel
            run: {{cmd: 'cat ../analyze/X.*/ana.txt | sort -n > all.txt', depends: [analyze_*]}}
        global.parameters:
          X: {{values: [{values}], label: X.%%}}
        """)


def run_to_the_end(spec: Path, study: Path, *options: str, timeout: float = 7200) -> Dict[str, float]:
    """Compile, submit, wait until every node has ended; the times and the jobs queued."""
    compiled = maestro("compile", str(spec), "-o", str(study), *options)
    manifest = json.loads((study / "study.json").read_text())
    jobs = sum(job["tasks"] for job in manifest["jobs"])
    start = time.monotonic()
    maestro("submit", str(study))
    submitted = time.monotonic() - start
    while time.monotonic() - start < timeout:
        document = json.loads(maestro("status", str(study), "--json").stdout)
        if document["finished"]:
            break
        time.sleep(5)
    else:
        sys.exit(f"{study} did not finish within {timeout} s")
    makespan = time.monotonic() - start
    counts = document["counts"]
    if counts != {"FINISHED": len(manifest["nodes"])}:
        sys.exit(f"{study}: not every node finished: {counts}")
    return {"jobs": jobs, "submit": submitted, "makespan": makespan, "nodes": len(manifest["nodes"]),
            "note": compiled.stdout.splitlines()[0] if compiled.stdout.startswith("bundles:") else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1)
    parser.add_argument("--max-queued", type=int, default=50)
    parser.add_argument("--account", default="mcbundle", help="the account with the limit (bundled study)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bundles-") as tmp:
        root = Path(tmp)
        plain_spec, bundled_spec = root / "plain.yaml", root / "bundled.yaml"
        plain_spec.write_text(sweep_spec(args.points, args.seconds, None))
        bundled_spec.write_text(sweep_spec(args.points, args.seconds, args.account))
        plain = run_to_the_end(plain_spec, root / "plain", "--max-queued", str(10 * args.points))
        bundled = run_to_the_end(bundled_spec, root / "bundled", "--max-queued", str(args.max_queued))
        same = (root / "plain/collect/all.txt").read_text() == (root / "bundled/collect/all.txt").read_text()
    print(f"{args.points}-point sweep of {args.seconds}-second steps (3 steps + a funnel); {bundled['note']}\n")
    print("| study | nodes | queued jobs | submit (s) | makespan (s) |")
    print("|---|---|---|---|---|")
    for name, row in (("one job per node", plain), (f"bundles, --max-queued {args.max_queued}", bundled)):
        print(f"| {name} | {row['nodes']} | {row['jobs']} | {row['submit']:.1f} | {row['makespan']:.0f} |")
    print(f"\nsame outputs: {'yes' if same else 'NO'}; makespan bundled / unbundled: "
          f"{bundled['makespan'] / plain['makespan']:.2f}")


if __name__ == "__main__":
    main()
