#!/usr/bin/env python3
"""A tiny stand-in for a simulation: the midpoint rule for the integral of x^2 over [0, 1].

The exact value is 1/3; with N midpoints the estimate is 1/3 - 1/(12 N^2), so the
error shrinks as the size grows. Writes a JSON result file.
"""
import argparse
import json
import sys


def estimate(size: int) -> float:
    width = 1.0 / size
    return sum(((i + 0.5) * width) ** 2 for i in range(size)) * width


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, required=True, help="number of midpoints (>= 1)")
    parser.add_argument("--output", required=True, help="result file (JSON) to write")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be >= 1")
    value = estimate(args.size)
    result = {"size": args.size, "estimate": value, "error": abs(value - 1.0 / 3.0)}
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    print(f"size {args.size}: estimate {value:.10f}, error {result['error']:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
