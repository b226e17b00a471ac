#!/usr/bin/env python3
"""Collect every simulation result found under a directory into one CSV summary.

Usage: aggregate.py ROOT [--name result.json] [--output summary.csv]
ROOT is the run_simulation step root: one sub-directory per size, each holding a result file.
"""
import argparse
import csv
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path, help="directory searched (recursively) for result files")
    parser.add_argument("--name", default="result.json", help="file name of one result")
    parser.add_argument("--output", default="summary.csv", help="summary file (CSV) to write")
    args = parser.parse_args(argv)
    results = []
    for path in sorted(args.root.rglob(args.name)):
        with open(path, encoding="utf-8") as handle:
            results.append(json.load(handle))
    if not results:
        print(f"aggregate.py: no {args.name} under {args.root}", file=sys.stderr)
        return 1
    results.sort(key=lambda item: item["size"])
    with open(args.output, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["size", "estimate", "error"])
        for item in results:
            writer.writerow([item["size"], repr(item["estimate"]), repr(item["error"])])
    print(f"aggregated {len(results)} result(s) into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
