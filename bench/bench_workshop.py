"""Benchmark: each workshop notebook at the workshop scale, cold, one after another, as a participant runs it.

For every workshop chapter (``mclbook.workshop.workshop_chapters``) the solution notebook (the student
notebook with its exercises solved) is executed with papermill on the CPU, in a fresh folder (every model
trained from scratch: no run is shared between notebooks). It records each notebook's wall time and the
CPU time of papermill and its kernel, and the machine's load average before and after. Before each
notebook the speed micro-benchmark of ``python -m mcl doctor`` runs in the same thread setting, in wall
time and in CPU time: on a machine busy with other jobs the wall time says little, while the CPU time (with
one thread, about the wall time a quiet machine needs) and the micro-benchmark per CPU second are what
``python -m mcl doctor`` scales to another machine.
From each notebook's results file it reads whether the chapter's point shows:

* 01_feature_suppression: SimCLR's Trifeature shape probe below the one-colour control's (and the CIFAR-MNIST
  suppression, control's CIFAR gain minus SimCLR's, against 0.05);
* 02_mcl_step_by_step: MCL's concatenation above stage 0 (SimCLR) by at least 0.05 on shape or texture (and
  its margin over the equal-budget ensemble);

and whether every check cell printed ``right``. ``--write`` stores the record as
``book/data/workshop_timing.json`` (the presets page and the pack's README show it; ``mcl.doctor``'s
reference must then be updated to the printed values, a test checks they agree).

Run: ``python bench/bench_workshop.py [--threads N] [--scale workshop] [--only NAME] [--write]``. On a quiet
laptop leave ``--threads`` unset (torch's default, as a participant's kernel has); on a shared, busy machine
``--threads 1`` (two threads competing for busy cores slow small models' steps down many times).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from mclbook.build import ROOT
from mclbook.results import git_commit
from mclbook.workshop import workshop_chapters, workshop_notebook

OUT = ROOT / "book" / "data" / "workshop_timing.json"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def speed(env: dict[str, str], seconds: float) -> tuple[float, float]:
    """The doctor's micro-benchmark in the kernels' threads: (views per wall second, per CPU second)."""
    code = (
        f"from mcl.doctor import benchmark; print(benchmark({seconds}), benchmark({seconds}, cpu_time=True))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return round(float(wall), 1), round(float(cpu), 1)


def children_cpu() -> float:
    """CPU seconds of every finished child process and its waited-for descendants (papermill, the kernel)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def points(name: str, metrics: dict) -> dict:
    """Whether the chapter's point shows, from its results file's metrics."""
    if name == "01_feature_suppression":
        tri = metrics["probes"]["trifeature"]
        simclr, control = tri["SimCLR"]["shape"]["mean"], tri["SimCLR, one colour"]["shape"]["mean"]
        cifar = metrics["cifar_suppression"]["SimCLR"]
        return {
            "trifeature_simclr_shape": round(simclr, 4),
            "trifeature_control_shape": round(control, 4),
            "shape_below_control": simclr < control,
            "cifar_mnist_suppression": round(cifar, 4),
            "cifar_mnist_shows": cifar >= 0.05,
        }
    if name == "02_mcl_step_by_step":
        probes = metrics["probes"]
        last = max((k for k in probes if k.startswith("stages 0..")), key=lambda k: int(k.split("..")[1]))
        gain = {a: probes[last][a] - probes["stage 0"][a] for a in ("shape", "texture", "color")}
        over = {a: probes[last][a] - metrics["ensemble_probes"][a] for a in ("shape", "texture", "color")}
        return {
            "concatenation": last,
            "mcl_minus_simclr": {a: round(v, 4) for a, v in gain.items()},
            "mcl_above_simclr_by_0.05": max(gain["shape"], gain["texture"]) >= 0.05,
            "mcl_minus_ensemble": {a: round(v, 4) for a, v in over.items()},
        }
    return {}


def run(chapter: Path, scale: str, env: dict[str, str], folder: Path) -> dict:
    name = chapter.stem
    notebook, executed = folder / f"{name}.ipynb", folder / f"{name}.out.ipynb"
    nbformat.write(workshop_notebook(chapter, "solution"), notebook)
    command = [sys.executable, "-m", "papermill", str(notebook), str(executed), "-k", "python3"]
    command += ["-p", "scale", scale, "-p", "device", "cpu", "--cwd", str(folder), "--no-progress-bar"]
    before, cpu = load(), children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    cpu = children_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-4000:]}")
    checks = [
        "".join(o.get("text", "") for o in cell.outputs).strip()
        for cell in nbformat.read(executed, 4).cells
        if cell.cell_type == "code" and "check" in cell.metadata.get("tags", [])
    ]
    metrics = json.loads((folder / "results" / f"{name}.json").read_text())["metrics"]
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "load_before": before,
        "load_after": load(),
        "checks_right": sum(c.startswith("right") for c in checks),
        "checks": len(checks),
        "points": points(name, metrics),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="workshop")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of every kernel (default: torch's own)")
    parser.add_argument("--only", action="append", default=[], help="only this chapter (repeatable)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the speed micro-benchmark")
    parser.add_argument("--write", action="store_true", help=f"store the record as {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline", HF_HUB_OFFLINE="1")
    if args.threads:
        env |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    chapters = [c for c in workshop_chapters() if not args.only or c.stem in args.only]
    record = {
        "scale": args.scale,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "threads": args.threads or "torch default",
        "git_commit": git_commit(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_before": load(),
        "notebooks": {},
    }
    print(f"workshop notebooks at scale={args.scale}, threads={record['threads']}, {record['machine']}")
    for chapter in chapters:
        with tempfile.TemporaryDirectory(prefix="mcl-bench-workshop-") as tmp:
            folder = Path(tmp)
            kernel_env = dict(env, MCL_RESULTS_DIR=str(folder / "results"))
            views, views_cpu = speed(kernel_env, args.seconds)
            row = {
                "views_per_s": views,
                "views_per_cpu_s": views_cpu,
                **run(chapter, args.scale, kernel_env, folder),
            }
        record["notebooks"][chapter.stem] = row
        print(
            f"{chapter.stem}: {row['seconds']:.1f} s ({row['seconds'] / 60:.1f} min; "
            f"CPU {row['cpu_seconds']:.1f} s), "
            f"load {row['load_before']} -> {row['load_after']}, micro-benchmark {views:.0f} views/s "
            f"({views_cpu:.0f} per CPU s), checks right "
            f"{row['checks_right']}/{row['checks']}\n  {json.dumps(row['points'])}",
            flush=True,
        )
    reference = {
        name: {"cpu_seconds": row["cpu_seconds"], "views_per_cpu_s": row["views_per_cpu_s"]}
        for name, row in record["notebooks"].items()
    }
    print("mcl.doctor.WORKSHOP_REFERENCE =", json.dumps(reference))
    if args.write:
        OUT.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
