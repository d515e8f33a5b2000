"""Run every benchmark in ``bench/`` one after another (``make bench``); each prints its own ratios.

Usage: ``python bench/run_all.py [--quick]``; ``--quick`` passes the benchmarks' small settings so the
whole run takes a few minutes on a laptop. Benchmarks run as subprocesses, so one failing does not hide
the others; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
QUICK_ARGS = {
    "bench_kmeans.py": ["--quick"],
    "bench_augment.py": ["--repeats", "2"],
    "bench_train_step.py": ["--steps", "3"],
    "bench_baselines.py": ["--steps", "3", "--repeats", "1"],
    "bench_clip_step.py": ["--n", "600", "--batch", "64", "--steps", "4"],
    "bench_probe.py": ["--repeats", "1"],
    "bench_workshop.py": ["--scale", "smoke"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings for a fast run")
    args = parser.parse_args()
    failed = []
    for script in sorted(BENCH.glob("bench_*.py")):
        extra = QUICK_ARGS.get(script.name, []) if args.quick else []
        print(f"\n===== {script.name} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra])
        print(f"===== {script.name}: exit {code} in {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
