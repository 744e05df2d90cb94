"""How much faster this machine runs pure CPU work on all cores than on one.

Usage: python -m benchmarks.cpu_scaling [--repeats 3]
The ceiling any process pool can reach here, to read the preprocess pool's speed-up
against. Writes benchmarks/results/cpu_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import get_context

from benchmarks.workspace import PROJECT
from tumorscreen.parallel import resolve_workers
from tumorscreen.records import machine_record, write_json

RESULT = PROJECT / "benchmarks" / "results" / "cpu_scaling.json"
TASKS = 16


def spin(_: int) -> int:
    """A fixed amount of interpreter work with no memory traffic."""
    total = 0
    for value in range(2_000_000):
        total += value * value
    return total


def timed(workers: int) -> float:
    start = time.perf_counter()
    if workers == 1:
        [spin(i) for i in range(TASKS)]
    else:
        with get_context("fork").Pool(workers) as pool:
            pool.map(spin, range(TASKS), chunksize=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    workers = resolve_workers(0)
    ratios = []
    for _ in range(args.repeats):  # interleaved, so drift in machine speed hits both sides
        one, many = timed(1), timed(workers)
        ratios.append(round(one / many, 2))
    result = {**machine_record(), "workers": workers, "tasks": TASKS,
              "speedups": ratios, "median_speedup": sorted(ratios)[len(ratios) // 2]}
    write_json(RESULT, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
